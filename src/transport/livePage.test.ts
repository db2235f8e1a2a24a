import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LIVE_PAGE_CSP, LIVE_PAGE_HTML } from './livePage.ts';

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
});
