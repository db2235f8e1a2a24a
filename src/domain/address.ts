import type { Hex } from './types.ts';

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** An address in any case, checksummed or not, as lowercase hex; `undefined` when it is not one. */
export function toAddress(raw: unknown): Hex | undefined {
  return typeof raw === 'string' && ADDRESS.test(raw) ? (raw.toLowerCase() as Hex) : undefined;
}
