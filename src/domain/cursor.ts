import type { BlockRef, Hex } from './types.ts';

/** Where a subscription stands: a block of a chain, as carried by a `cursor`. */
export interface CursorPosition extends BlockRef {
  readonly chainId: number;
}

/** The cursor of a block-scoped message: opaque to clients, `chainId:number:hash` inside. */
export function toCursor(chainId: number, block: BlockRef): string {
  return `${chainId}:${block.number}:${block.hash}`;
}

const CURSOR = /^(\d{1,15}):(\d{1,15}):(0x[0-9a-f]{64})$/;

/** Reads a cursor a client handed back; `undefined` for anything malformed. */
export function parseCursor(raw: unknown): CursorPosition | undefined {
  if (typeof raw !== 'string') return undefined;
  const m = CURSOR.exec(raw);
  if (m === null) return undefined;
  return { chainId: Number(m[1]), number: Number(m[2]), hash: m[3] as Hex };
}
