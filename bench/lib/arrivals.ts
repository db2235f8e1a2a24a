/**
 * What arrived, per stream and block number, and bounded waits for it: a wait resolves at the
 * arrival (never by polling) or with `undefined` at its timeout. The first arrival of a key counts.
 */
export class Arrivals<S extends string, V> {
  readonly #values = new Map<string, V>();
  readonly #waiters = new Map<string, (value: V) => void>();

  record(stream: S, number: number, value: V): void {
    const key = `${stream}:${number}`;
    if (this.#values.has(key)) return;
    this.#values.set(key, value);
    this.#waiters.get(key)?.(value);
  }

  until(stream: S, number: number, timeoutMs: number): Promise<V | undefined> {
    const key = `${stream}:${number}`;
    const known = this.#values.get(key);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(key);
        resolve(undefined);
      }, timeoutMs);
      this.#waiters.set(key, (value) => {
        clearTimeout(timer);
        this.#waiters.delete(key);
        resolve(value);
      });
    });
  }
}
