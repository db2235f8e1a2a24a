import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

/** Debian's Chromium (package `chromium`, installed by .ci/run). */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Flags for a quiet, offline, headless Chromium that runs as root in CI. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A headless Chromium with a fresh profile, and a `close()` that also removes the profile. */
export interface Chromium {
  readonly context: BrowserContext;
  readonly close: () => Promise<void>;
}

/** Launches Debian's Chromium through playwright-core with a fresh user-data-dir. */
export async function launchChromium(
  options: { viewport?: { width: number; height: number }; timeoutMs?: number } = {},
): Promise<Chromium> {
  const profile = mkdtempSync(join(tmpdir(), 'blockcast-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS],
      viewport: options.viewport ?? { width: 1280, height: 800 },
      timeout: options.timeoutMs ?? 30_000,
    });
    return {
      context,
      close: async () => {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
}
