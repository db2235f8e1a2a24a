import { getAddress } from 'ethers';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { type Chromium, launchChromium } from './helpers/browser.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

// The live page at `/` in headless Chromium, against a gateway following an anvil that mines only
// when the test says, so the test knows when each block was mined.
describe('live page in a browser', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let browser: Chromium;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    chain = new TestChain(anvil.httpUrl);
    browser = await launchChromium();
    page = await browser.context.newPage();
    // Script errors and CSP violations (reported on the console) fail the test.
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    await page.goto(`${gateway.httpUrl}/`, { timeout: 15_000 });
    await page.locator('#status.live').waitFor({ timeout: 10_000 });
  });

  afterAll(async () => {
    await browser?.close();
    chain?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  it('is served as one HTML document with a strict Content-Security-Policy', async () => {
    const response = await fetch(`${gateway.httpUrl}/`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'sha256-/);
    const html = await response.text();
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet/);
  });

  it('shows a new block within 5 s of it being mined', async () => {
    const minedAt = performance.now();
    const number = await chain.mine();
    const row = page.locator(`#blocks tr[data-number="${number}"]`);
    await row.waitFor({ timeout: 5_000 });
    expect(performance.now() - minedAt).toBeLessThan(5_000);
    const node = await chain.block(number);
    const cells = await row.locator('td').allTextContents();
    expect(cells[0]).toBe(String(number));
    expect(await row.locator('td').nth(1).getAttribute('title')).toBe(node.hash);
    expect(cells[2]).toBe(String(node.transactions.length));
    expect(cells[3]).toMatch(/^\d+ s ago$/);
    // The newest block is on top.
    expect(await page.locator('#blocks tr').first().getAttribute('data-number')).toBe(String(number));
  });

  it('watching an address shows a transfer sent to it', async () => {
    const watched = chain.address(3);
    await page.locator('#address').fill(getAddress(watched));
    await page.locator('#watch-form button[type=submit]').click();
    await page.locator('#watch-status', { hasText: 'watching 1 address' }).waitFor({ timeout: 5_000 });
    await expect(page.locator('#watched').textContent()).resolves.toContain(watched);

    const hash = await chain.transfer(0, watched, 1_500_000_000_000_000n);
    const number = await chain.mine();
    const row = page.locator(`#activity tr[data-tx="${hash}"]`);
    await row.waitFor({ timeout: 5_000 });
    const cells = await row.locator('td').allTextContents();
    expect(cells.slice(0, 3)).toEqual([String(number), 'in', 'tx']);
    expect(cells[5]).toBe('0.0015 ETH');
    expect(await row.locator('td').nth(3).getAttribute('title')).toBe(chain.address(0));
    expect(await row.locator('td').nth(6).getAttribute('title')).toBe(hash);
  });

  it('strikes out a block that a reorg removed, and shows its replacement', async () => {
    const number = await chain.mine();
    const orphan = page.locator(`#blocks tr[data-number="${number}"]`);
    await orphan.waitFor({ timeout: 5_000 });
    const orphanHash = await orphan.getAttribute('data-hash');
    await rpc(anvil.httpUrl, 'anvil_reorg', [1, []]);
    chain.resetNonces();
    await chain.mine();
    await page.locator(`#blocks tr.removed[data-hash="${orphanHash}"]`).waitFor({ timeout: 5_000 });
    const replacement = (await chain.block(number)).hash;
    expect(replacement).not.toBe(orphanHash);
    await page.locator(`#blocks tr[data-hash="${replacement}"]:not(.removed)`).waitFor({ timeout: 5_000 });
  });

  it('rejects a malformed address in the page and keeps streaming', async () => {
    await page.locator('#address').fill('0x1234');
    await page.locator('#watch-form button[type=submit]').click();
    await page.locator('#watch-status.error').waitFor({ timeout: 5_000 });
    const number = await chain.mine();
    await page.locator(`#blocks tr[data-number="${number}"]`).waitFor({ timeout: 5_000 });
    expect(problems).toEqual([]);
  });
});
