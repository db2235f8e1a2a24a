import { describe, expect, it } from 'vitest';
import { parseCursor, toCursor } from './cursor.ts';
import type { Hex } from './types.ts';

const HASH: Hex = `0x${'ab'.repeat(32)}`;

describe('toCursor / parseCursor', () => {
  it.each([
    [1, 0],
    [1, 19_000_000],
    [31_337, 42],
    [8453, 999_999_999_999_999],
  ])('round-trips chain %i block %i', (chainId, number) => {
    expect(parseCursor(toCursor(chainId, { number, hash: HASH }))).toStrictEqual({ chainId, number, hash: HASH });
  });

  it('gives a string of chainId:number:hash', () => {
    expect(toCursor(10, { number: 5, hash: HASH })).toBe(`10:5:${HASH}`);
  });

  it('gives different cursors to two blocks of one height with different hashes', () => {
    const other: Hex = `0x${'cd'.repeat(32)}`;
    expect(toCursor(1, { number: 5, hash: HASH })).not.toBe(toCursor(1, { number: 5, hash: other }));
  });

  it.each([
    ['a number', 5],
    ['null', null],
    ['undefined', undefined],
    ['an object', { chainId: 1, number: 2, hash: HASH }],
    ['an empty string', ''],
    ['garbage', 'not-a-cursor'],
    ['a truncated cursor', `1:5:${HASH.slice(0, -1)}`],
    ['a cursor without its hash', '1:5'],
    ['a cursor without its chain', `5:${HASH}`],
    ['a hash one byte too long', `1:5:${HASH}ab`],
    ['a 40-digit hash (an address)', `1:5:0x${'ab'.repeat(20)}`],
    ['an uppercase hash', `1:5:0x${'AB'.repeat(32)}`],
    ['a hash without 0x', `1:5:${'ab'.repeat(32)}`],
    ['a negative block number', `1:-5:${HASH}`],
    ['a fractional block number', `1:5.5:${HASH}`],
    ['a block number of 16 digits', `1:${'9'.repeat(16)}:${HASH}`],
    ['trailing text', `1:5:${HASH} `],
    ['leading text', ` 1:5:${HASH}`],
    ['a fourth part', `1:5:${HASH}:0`],
  ])('reads %s as no cursor', (_, raw) => {
    expect(parseCursor(raw)).toBeUndefined();
  });
});
