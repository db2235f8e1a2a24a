import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LIVE_PAGE_CSP, LIVE_PAGE_HTML } from './livePage.ts';

const script = (LIVE_PAGE_HTML.match(/<script>([\s\S]*?)<\/script>/) ?? [])[1] ?? '';

/** The page's value formatter, taken out of its script (its constants and pure helpers) to run here. */
function pageAmountOf(): (event: Record<string, unknown>) => [string, string] {
  const between = (from: string, to: string): string => script.slice(script.indexOf(from), script.indexOf(to));
  const source = `${between('const MAX_BLOCKS', 'const ADDRESS')}${between('const short =', 'const trim =')}return amountOf;`;
  return new Function(source)() as (event: Record<string, unknown>) => [string, string];
}

const TOKEN = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
const hex = (n: bigint): string => `0x${n.toString(16)}`;

const hashOf = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

describe('live page', () => {
  it('allows exactly its one inline script and one inline style by hash', () => {
    const scripts = [...LIVE_PAGE_HTML.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1] ?? '');
    const styles = [...LIVE_PAGE_HTML.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1] ?? '');
    expect(scripts).toHaveLength(1);
    expect(styles).toHaveLength(1);
    expect(LIVE_PAGE_CSP).toContain(`script-src ${hashOf(scripts[0] ?? '')};`);
    expect(LIVE_PAGE_CSP).toContain(`style-src ${hashOf(styles[0] ?? '')};`);
    expect(LIVE_PAGE_CSP).toContain("default-src 'none'");
  });

  it('loads nothing from elsewhere and talks JSON over /v1', () => {
    expect(LIVE_PAGE_HTML).not.toMatch(/\bsrc=|href="(?!data:|\/metrics)/);
    expect(LIVE_PAGE_HTML).toContain("'/v1?encoding=json'");
  });

  it('puts text from the gateway in through textContent only, never as HTML', () => {
    expect(script).toContain('textContent');
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
  });

  it('shows token amounts with their decimals and symbol, and raw units with the address without decimals', () => {
    const amountOf = pageAmountOf();
    const erc20 = (value: bigint, fields: Record<string, unknown> = {}) =>
      amountOf({ kind: 'erc20', token: TOKEN, value: hex(value), ...fields })[0];
    expect(erc20(1_250_500_000n, { decimals: 6, symbol: 'USDC' })).toBe('1,250.5 USDC');
    expect(erc20(1_250_500_000_000_000_000_000n, { decimals: 18, symbol: 'TST' })).toBe('1,250.5 TST');
    expect(erc20(1_234_567_891_234_567_891n, { decimals: 18, symbol: 'TST' })).toBe('1.234567 TST');
    expect(erc20(1n, { decimals: 18, symbol: 'TST' })).toBe('<0.000001 TST');
    expect(erc20(0n, { decimals: 18, symbol: 'TST' })).toBe('0 TST');
    expect(erc20(1_000_000n, { decimals: 0, symbol: 'PTS' })).toBe('1,000,000 PTS');
    expect(erc20(5_000_000n, { decimals: 6 })).toBe('5 0x5fbd\u20260aa3');
    expect(erc20(1_250_500n)).toBe('1,250,500 0x5fbd\u20260aa3');
    expect(erc20(1_250_500n, { symbol: 'TST' })).toBe('1,250,500 0x5fbd\u20260aa3');
    expect(erc20(7n, { decimals: 1.5, symbol: 'X' })).toBe('7 0x5fbd\u20260aa3');
    expect(amountOf({ kind: 'erc20', token: TOKEN, value: hex(7n) })[1]).toBe(`7 units of ${TOKEN}`);
    expect(amountOf({ kind: 'erc721', token: TOKEN, tokenId: '0x2a', symbol: 'NFT' })[0]).toBe('#42 NFT');
    expect(amountOf({ kind: 'erc1155', token: TOKEN, tokenId: '0x2', value: '0xa' })[0]).toBe('10 0x5fbd\u20260aa3 #2');
    expect(amountOf({ kind: 'internal', value: hex(1_500_000_000_000_000n) })[0]).toBe('0.0015 ETH');
    expect(amountOf({ kind: 'tx', value: hex(12_345n * 10n ** 18n) })[0]).toBe('12,345 ETH');
  });

  it('shows a hostile symbol as plain, bounded text, and survives malformed values', () => {
    const amountOf = pageAmountOf();
    const shown = amountOf({
      kind: 'erc20',
      token: TOKEN,
      value: '0x1',
      decimals: 0,
      symbol: '\u202e<img src=x>\u0000',
    })[0];
    expect(shown).toBe('1 <img src=x>');
    const long = amountOf({ kind: 'erc20', token: TOKEN, value: '0x1', decimals: 0, symbol: 'A'.repeat(1000) })[0];
    expect(long.length).toBeLessThan(30);
    expect(amountOf({ kind: 'erc20', token: TOKEN, value: 'lots', decimals: 18 })).toEqual(['', '']);
    expect(amountOf({ kind: 'erc20', token: TOKEN, value: `0x${'f'.repeat(65)}`, decimals: 18 })).toEqual(['', '']);
    expect(amountOf({ kind: 'teleport' })).toEqual(['', '']);
  });
});
