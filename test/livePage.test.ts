import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getAddress } from 'ethers';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { type Chromium, launchChromium } from './helpers/browser.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { artifact, call, deploy, deployedAddress } from './helpers/contracts.ts';
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
    // Once mined, its row replaces the pending one the mempool may have shown first.
    const row = page.locator(`#activity tr[data-tx="${hash}"]:not(.pending)`);
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

  it('shows a token amount with its decimals and symbol', async () => {
    const watched = chain.address(5);
    await page.locator('#address').fill(watched);
    await page.locator('#watch-form button[type=submit]').click();
    await page.locator('#watch-status', { hasText: 'watching 2 addresses' }).waitFor({ timeout: 5_000 });
    const deployment = await deploy(chain, 0, 'TestERC20', [10n ** 24n]);
    await chain.mine();
    const token = await deployedAddress(chain, deployment);

    // The first sighting of a token may come without its symbol (the gateway reads it in the
    // background): send the same transfer in later blocks until a row shows it, a few at most.
    const amount = 1_250_500_000_000_000_000_000n; // 1,250.5 TST (18 decimals)
    let shown = '';
    for (let round = 0; round < 4 && !shown.endsWith('TST'); round++) {
      const hash = await call(chain, 0, 'TestERC20', token, 'transfer', [watched, amount]);
      const number = await chain.mine();
      const row = page.locator(`#activity tr[data-tx="${hash}"][data-kind="erc20"]`);
      await row.waitFor({ timeout: 5_000 });
      const cells = await row.locator('td').allTextContents();
      expect(cells.slice(0, 3)).toEqual([String(number), 'in', 'erc20']);
      shown = cells[5] ?? '';
      expect(await row.locator('td').nth(5).getAttribute('title')).toContain(`${amount} units of ${token}`);
    }
    expect(shown).toBe('1,250.5 TST');
  });

  it('shows ETH that a contract moved inside a transaction as a row of its own', async () => {
    const watched = chain.address(5);
    const deployment = await deploy(chain, 0, 'Splitter');
    await chain.mine();
    const splitter = await deployedAddress(chain, deployment);
    const wei = 250_000_000_000_000_000n;
    const data = artifact('Splitter').iface.encodeFunctionData('split', [[watched], [wei]]);
    const hash = await chain.send(0, { to: splitter, data, value: wei });
    const number = await chain.mine();
    const row = page.locator(`#activity tr[data-tx="${hash}"][data-kind="internal"]`);
    await row.waitFor({ timeout: 5_000 });
    const cells = await row.locator('td').allTextContents();
    expect(cells.slice(0, 3)).toEqual([String(number), 'in', 'internal']);
    expect(await row.locator('td').nth(3).getAttribute('title')).toBe(splitter);
    expect(await row.locator('td').nth(4).getAttribute('title')).toBe(watched);
    expect(cells[5]).toBe('0.25 ETH');
  });

  it('keeps every column of both tables reachable at a phone width (390 px)', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    const shot = join(mkdtempSync(join(tmpdir(), 'blockcast-live-page-')), 'phone-390x844.png');
    await page.screenshot({ path: shot, fullPage: true, animations: 'disabled' });
    expect(statSync(shot).size).toBeGreaterThan(0);
    console.log(`live page at 390x844: ${shot}`);

    const reach = await page.evaluate(columnsReachable);
    expect(reach.problems).toEqual([]);
    expect(reach.pageWidth).toBeLessThanOrEqual(390);
    expect(reach.rows).toBeGreaterThan(3);
    expect(problems).toEqual([]);
  });
});

/**
 * Runs in the page: whether every cell of every table row can be seen. The page itself must not
 * scroll sideways; a cell beyond the viewport must lie inside a container that scrolls sideways
 * (within its scrollWidth), and scrolling that container to its end must bring each row's last
 * cell into view (and back to its start, the first cell).
 */
function columnsReachable(): { problems: string[]; pageWidth: number; rows: number } {
  const problems: string[] = [];
  const viewport = window.innerWidth;
  const pageWidth = document.documentElement.scrollWidth;
  if (pageWidth > viewport) problems.push(`the page scrolls sideways: ${pageWidth} px wide in ${viewport} px`);
  const inView = (el: Element, box: DOMRect): boolean => {
    const r = el.getBoundingClientRect();
    return r.left >= Math.max(0, box.left) - 1 && r.right <= Math.min(viewport, box.right) + 1;
  };
  const scroller = (el: Element): HTMLElement | undefined => {
    for (let up = el.parentElement; up !== null; up = up.parentElement) {
      const overflow = getComputedStyle(up).overflowX;
      if ((overflow === 'auto' || overflow === 'scroll') && up.scrollWidth > up.clientWidth) return up;
    }
    return undefined;
  };
  let rows = 0;
  for (const row of Array.from(document.querySelectorAll('table tbody tr'))) {
    rows++;
    const cells = Array.from(row.querySelectorAll('td'));
    const box = scroller(row);
    const label = `${row.closest('tbody')?.id} row ${rows}`;
    if (box === undefined) {
      const whole = new DOMRect(0, 0, viewport, window.innerHeight);
      for (const [i, cell] of cells.entries())
        if (!inView(cell, whole)) problems.push(`${label}: cell ${i} is cut off`);
      continue;
    }
    const boxRect = box.getBoundingClientRect();
    if (boxRect.left < -1 || boxRect.right > viewport + 1)
      problems.push(`${label}: its scroll box leaves the viewport`);
    for (const [i, cell] of cells.entries()) {
      const right = cell.getBoundingClientRect().right - boxRect.left + box.scrollLeft;
      if (right > box.scrollWidth + 1) problems.push(`${label}: cell ${i} lies past its box's scrollWidth`);
    }
    const first = cells[0];
    const last = cells.at(-1);
    box.scrollLeft = box.scrollWidth;
    if (last !== undefined && !inView(last, box.getBoundingClientRect()))
      problems.push(`${label}: its last cell stays out of view`);
    box.scrollLeft = 0;
    if (first !== undefined && !inView(first, box.getBoundingClientRect()))
      problems.push(`${label}: its first cell is out of view`);
  }
  return { problems, pageWidth, rows };
}
