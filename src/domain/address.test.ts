import { describe, expect, it } from 'vitest';
import { toAddress } from './address.ts';

const LOWER = '0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed';

describe('toAddress', () => {
  it.each([
    ['lowercase', LOWER],
    ['checksummed', '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed'],
    ['uppercase digits', `0x${LOWER.slice(2).toUpperCase()}`],
  ])('gives a %s address as lowercase', (_, raw) => {
    expect(toAddress(raw)).toBe(LOWER);
  });

  it('accepts an address whose checksum is wrong (case is not checked)', () => {
    expect(toAddress('0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed')).toBe(LOWER);
  });

  it('accepts the zero address', () => {
    expect(toAddress(`0x${'0'.repeat(40)}`)).toBe(`0x${'0'.repeat(40)}`);
  });

  it.each([
    ['41 characters (39 hex digits)', LOWER.slice(0, 41)],
    ['43 characters (41 hex digits)', `${LOWER}0`],
    ['a non-hex digit', `${LOWER.slice(0, 41)}g`],
    ['no 0x prefix', LOWER.slice(2)],
    ['a 0X prefix', `0X${LOWER.slice(2)}`],
    ['surrounding spaces', ` ${LOWER} `],
    ['a trailing newline', `${LOWER}\n`],
    ['an empty string', ''],
    ['a 32-byte hash', `0x${'ab'.repeat(32)}`],
    ['a number', 0x5a],
    ['a bigint', 5n],
    ['null', null],
    ['undefined', undefined],
    ['an array holding an address', [LOWER]],
    ['bytes', new Uint8Array(20)],
  ])('reads %s as no address', (_, raw) => {
    expect(toAddress(raw)).toBeUndefined();
  });
});
