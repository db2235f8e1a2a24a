import { describe, expect, it } from 'vitest';
import { type OriginPattern, originAllowed, parseOriginPattern } from './matchOrigin.ts';

/** The patterns of `raw`; fails the test when one of them does not parse. */
function patterns(...raw: string[]): OriginPattern[] {
  return raw.map((text) => {
    const pattern = parseOriginPattern(text);
    if (pattern === undefined) throw new Error(`not a pattern: ${text}`);
    return pattern;
  });
}

describe('parseOriginPattern', () => {
  it('reads * as any origin', () => {
    expect(parseOriginPattern('*')).toStrictEqual({ text: '*', scheme: '', host: '', anySubdomain: false, any: true });
  });

  it('reads an exact origin into its scheme and host', () => {
    expect(parseOriginPattern('https://wallet.example')).toStrictEqual({
      text: 'https://wallet.example',
      scheme: 'https',
      host: 'wallet.example',
      anySubdomain: false,
      any: false,
    });
  });

  it('keeps the port of an exact origin in its host', () => {
    expect(parseOriginPattern('http://localhost:3000')).toMatchObject({ scheme: 'http', host: 'localhost:3000' });
  });

  it('reads a subdomain pattern as the suffix of the host, with its dot', () => {
    expect(parseOriginPattern('https://*.example.com')).toStrictEqual({
      text: 'https://*.example.com',
      scheme: 'https',
      host: '.example.com',
      anySubdomain: true,
      any: false,
    });
  });

  it('lowercases and trims what it reads', () => {
    expect(parseOriginPattern('  HTTPS://App.Example.COM ')).toMatchObject({
      text: 'https://app.example.com',
      scheme: 'https',
      host: 'app.example.com',
    });
  });

  it('reads an IPv6 literal with a port', () => {
    expect(parseOriginPattern('http://[::1]:8080')).toMatchObject({ scheme: 'http', host: '[::1]:8080' });
  });

  it.each([
    ['a path', 'https://app.example/'],
    ['a longer path', 'https://app.example/login'],
    ['a query', 'https://app.example?x=1'],
    ['a fragment', 'https://app.example#top'],
    ['no scheme', 'app.example'],
    ['a scheme-relative origin', '//app.example'],
    ['an ftp scheme', 'ftp://app.example'],
    ['a ws scheme', 'ws://app.example'],
    ['user info', 'https://user@app.example'],
    ['a wildcard inside the host', 'https://a.*.example'],
    ['a wildcard without a dot', 'https://*example.com'],
    ['a bare wildcard host', 'https://*'],
    ['a port that is not a number', 'https://app.example:http'],
    ['an empty host', 'https://'],
    ['an empty string', ''],
    ['null', 'null'],
    ['two wildcards', '**'],
  ])('refuses %s', (_, raw) => {
    expect(parseOriginPattern(raw)).toBeUndefined();
  });
});

describe('originAllowed', () => {
  it('allows any origin when no pattern is set', () => {
    expect(originAllowed('https://evil.example', [])).toBe(true);
    expect(originAllowed('null', [])).toBe(true);
  });

  it('allows a request without an Origin header even when patterns are set', () => {
    expect(originAllowed('', patterns('https://app.example'))).toBe(true);
  });

  it('allows an exact origin and nothing else', () => {
    const list = patterns('https://app.example');
    expect(originAllowed('https://app.example', list)).toBe(true);
    expect(originAllowed('https://app.example.evil', list)).toBe(false);
    expect(originAllowed('https://evil.app.example', list)).toBe(false);
    expect(originAllowed('https://other.example', list)).toBe(false);
  });

  it('tells http from https', () => {
    expect(originAllowed('http://app.example', patterns('https://app.example'))).toBe(false);
    expect(originAllowed('https://app.example', patterns('http://app.example'))).toBe(false);
  });

  it('compares ports exactly', () => {
    const list = patterns('http://localhost:3000');
    expect(originAllowed('http://localhost:3000', list)).toBe(true);
    expect(originAllowed('http://localhost:3001', list)).toBe(false);
    expect(originAllowed('http://localhost', list)).toBe(false);
    expect(originAllowed('https://app.example:8443', patterns('https://app.example'))).toBe(false);
  });

  it('ignores case in the origin and the pattern', () => {
    expect(originAllowed('HTTPS://APP.Example', patterns('https://app.EXAMPLE'))).toBe(true);
  });

  it('allows every subdomain, at any depth, of a subdomain pattern', () => {
    const list = patterns('https://*.example.com');
    expect(originAllowed('https://a.example.com', list)).toBe(true);
    expect(originAllowed('https://a.b.example.com', list)).toBe(true);
  });

  it('refuses the bare domain, a look-alike domain and another scheme for a subdomain pattern', () => {
    const list = patterns('https://*.example.com');
    expect(originAllowed('https://example.com', list)).toBe(false);
    expect(originAllowed('https://evilexample.com', list)).toBe(false);
    expect(originAllowed('https://.example.com', list)).toBe(false);
    expect(originAllowed('https://a.example.com.evil', list)).toBe(false);
    expect(originAllowed('http://a.example.com', list)).toBe(false);
  });

  it('matches the port of a subdomain pattern', () => {
    const list = patterns('https://*.example.com:8443');
    expect(originAllowed('https://a.example.com:8443', list)).toBe(true);
    expect(originAllowed('https://a.example.com', list)).toBe(false);
    expect(originAllowed('https://a.example.com:9443', list)).toBe(false);
  });

  it('allows an origin matched by any pattern of the list', () => {
    const list = patterns('https://one.example', 'http://localhost:3000', 'https://*.two.example');
    expect(originAllowed('http://localhost:3000', list)).toBe(true);
    expect(originAllowed('https://x.two.example', list)).toBe(true);
    expect(originAllowed('https://three.example', list)).toBe(false);
  });

  it('allows any web origin with *', () => {
    expect(originAllowed('https://anything.example', patterns('*'))).toBe(true);
    expect(originAllowed('http://127.0.0.1:5173', patterns('*'))).toBe(true);
  });

  it('allows every origin with *, null and other schemes too', () => {
    expect(originAllowed('null', patterns('https://app.example', '*'))).toBe(true);
    expect(originAllowed('chrome-extension://abc', patterns('*'))).toBe(true);
  });

  it('refuses the origin null (a sandboxed page, a file) when patterns are set', () => {
    expect(originAllowed('null', patterns('https://app.example'))).toBe(false);
  });

  it.each([
    ['a path', 'https://app.example/x'],
    ['a trailing slash', 'https://app.example/'],
    ['another scheme', 'chrome-extension://app.example'],
    ['garbage', 'app.example'],
  ])('refuses an Origin header with %s', (_, origin) => {
    expect(originAllowed(origin, patterns('https://app.example'))).toBe(false);
  });
});
