/**
 * Takes the README's screenshot of the live page over real traffic: starts the gateway as
 * `npm start` does (embedded anvil devnet with its traffic generator), opens `/` in headless
 * Chromium, watches one devnet account through the page's form, waits until blocks and activity
 * (a token transfer among it, shown with the token's symbol) have streamed in, and writes
 * docs/live-page.png.
 *
 * Run: node --import tsx scripts/screenshot.ts [output.png]
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../test/helpers/browser.ts';
import { startGateway } from '../test/helpers/gateway.ts';

/** Anvil's first dev account (public test key material, local chains only). */
const WATCHED_ADDRESS = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
/** Rows to wait for before the shot, and how long to wait for them. */
const MIN_BLOCK_ROWS = 10;
const MIN_ACTIVITY_ROWS = 5;
const WAIT_MS = 60_000;
const VIEWPORT = { width: 1280, height: 600 };

const output = process.argv[2] ?? fileURLToPath(new URL('../docs/live-page.png', import.meta.url));

const gateway = await startGateway([], { timeoutMs: 30_000 });
try {
  const browser = await launchChromium({ viewport: VIEWPORT });
  try {
    const page = await browser.context.newPage();
    await page.goto(`${gateway.httpUrl}/`, { timeout: 15_000 });
    await page.locator('#status.live').waitFor({ timeout: 10_000 });
    await page.locator('#address').fill(WATCHED_ADDRESS);
    await page.locator('#watch-form button[type=submit]').click();
    await page.locator('#watch-status', { hasText: 'watching 1 address' }).waitFor({ timeout: 10_000 });
    await page.locator(`#blocks tr:nth-child(${MIN_BLOCK_ROWS})`).waitFor({ timeout: WAIT_MS });
    await page.locator(`#activity tr:nth-child(${MIN_ACTIVITY_ROWS})`).waitFor({ timeout: WAIT_MS });
    // The devnet token's transfers carry its symbol once the gateway has read it: show one.
    await page.locator('#activity tr[data-kind="erc20"]', { hasText: 'TST' }).first().waitFor({ timeout: WAIT_MS });
    mkdirSync(dirname(output), { recursive: true });
    // Animations finished, so the shot does not depend on when a row's highlight was fading; the
    // whole page, however tall the activity list has grown.
    await page.screenshot({ path: output, animations: 'disabled', fullPage: true });
    console.log(`wrote ${output}`);
  } finally {
    await browser.close();
  }
} finally {
  await gateway.stop();
}
