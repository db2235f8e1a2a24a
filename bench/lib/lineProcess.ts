/**
 * A child process that speaks JSON lines: commands on its stdin, one JSON object per line on its
 * stdout. Waits are bounded; stderr is kept for the error messages.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** One JSON message of a child. */
export type Message = Record<string, unknown> & { event: string };

/** A child process speaking JSON lines. */
export class LineProcess {
  readonly name: string;
  readonly child: ChildProcessWithoutNullStreams;
  readonly #messages: Message[] = [];
  #waiters: Array<{ predicate: (m: Message) => boolean; resolve: (m: Message) => void }> = [];
  #stderr = '';
  #exited: Promise<number | null>;

  constructor(name: string, command: string, args: readonly string[], cwd: string) {
    this.name = name;
    this.child = spawn(command, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    this.#exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      let message: Message;
      try {
        message = JSON.parse(line) as Message;
      } catch {
        this.#stderr += `${line}\n`;
        return;
      }
      this.#messages.push(message);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.predicate(message)) return true;
        w.resolve(message);
        return false;
      });
    });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-20_000);
    });
    this.child.stdin.on('error', () => {
      // The child exited; its exit is reported through the waits.
    });
  }

  /** The process id (the same as the program's after `taskset` execs it). */
  get pid(): number {
    return this.child.pid as number;
  }

  /** What the child wrote on stderr (the last 20 kB). */
  get stderr(): string {
    return this.#stderr;
  }

  /** Writes one line to the child's stdin. */
  send(line: string | Record<string, unknown>): void {
    this.child.stdin.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  }

  /** The next message (from now on) that matches, within `timeoutMs`. */
  next(predicate: (m: Message) => boolean, timeoutMs: number): Promise<Message> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}) while waited on:\n${this.#stderr}`));
      };
      const waiter = {
        predicate,
        resolve: (m: Message) => {
          clearTimeout(timer);
          this.child.off('exit', onExit);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        this.child.off('exit', onExit);
        reject(new Error(`${this.name}: no answer within ${timeoutMs} ms:\n${this.#stderr}`));
      }, timeoutMs);
      this.child.once('exit', onExit);
      this.#waiters.push(waiter);
    });
  }

  /** Sends a command and waits for the answer whose `event` is `event`. */
  request(line: string | Record<string, unknown>, event: string, timeoutMs = 30_000): Promise<Message> {
    const answer = this.next((m) => m.event === event, timeoutMs);
    this.send(line);
    return answer;
  }

  /** Messages received so far whose `event` is `event`. */
  received(event: string): Message[] {
    return this.#messages.filter((m) => m.event === event);
  }

  /** Ends the child: closes its stdin, then SIGKILL after `graceMs`. Resolves when it exited. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }
}
