import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { type Chromium, launchChromium } from './helpers/browser.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';
import { TcpProxy } from './helpers/proxy.ts';

// The client SDK in headless Chromium, with the browser's own WebSocket and msgpackr's browser
// build, against the real gateway: what `@blockcast/client` gives a web page.

const CLIENT_DIR = fileURLToPath(new URL('../packages/client/src/', import.meta.url));
const MSGPACKR_DIR = fileURLToPath(new URL('../node_modules/msgpackr/', import.meta.url));

/** packages/client/src compiled to browser ES modules in memory (file name → JavaScript). */
function compileClient(): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of readdirSync(CLIENT_DIR).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))) {
    const { outputText } = ts.transpileModule(readFileSync(`${CLIENT_DIR}${file}`, 'utf8'), {
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        rewriteRelativeImportExtensions: true,
      },
      fileName: file,
    });
    out.set(file.replace(/\.ts$/, '.js'), outputText);
  }
  return out;
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="importmap">{"imports":{"msgpackr":"/msgpackr/index.js"}}</script>
<script type="module">
  import { createClient } from '/client/index.js';
  window.seen = { statuses: [], blocks: [], activity: [], errors: [] };
  window.start = (url, encoding, addresses) => {
    const client = createClient({
      url,
      encoding,
      heartbeatIntervalMs: 500,
      backoff: { initialMs: 100, maxMs: 500, factor: 2, jitter: 0.5 },
      onStatus: (e) => window.seen.statuses.push(e.status),
      onError: (e) => window.seen.errors.push(e.code + ': ' + e.message),
    });
    client.subscribeBlocks({}, (m) => window.seen.blocks.push(m));
    client.watchAddresses(addresses, {}, (m) => window.seen.activity.push(m));
    window.client = client;
  };
  window.ready = true;
</script>`;

/** Serves the page, the compiled client and msgpackr's files on a loopback port. */
async function serve(files: Map<string, string>): Promise<Server> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const js = (body: string): void => {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(body);
    };
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (path.startsWith('/client/') && files.has(path.slice(8))) {
      js(files.get(path.slice(8)) as string);
    } else if (/^\/msgpackr\/[a-z]+\.js$/.test(path)) {
      js(readFileSync(`${MSGPACKR_DIR}${path.slice(10)}`, 'utf8'));
    } else if (path === '/favicon.ico') {
      res.writeHead(204).end();
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return server;
}

describe('the client SDK in a browser', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let proxy: TcpProxy;
  let chain: TestChain;
  let http: Server;
  let browser: Chromium;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    proxy = await TcpProxy.start(gateway.port);
    chain = new TestChain(anvil.httpUrl);
    http = await serve(compileClient());
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => http?.close(resolve));
    chain?.close();
    await proxy?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  async function openPage(): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    await page.goto(`http://127.0.0.1:${(http.address() as AddressInfo).port}/`, { timeout: 15_000 });
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true, null, {
      timeout: 10_000,
    });
    return { page, problems };
  }

  /** What the page's client told the page so far. */
  interface Seen {
    statuses: string[];
    errors: string[];
    blocks: Array<{ type: string; number?: number; hash?: string }>;
    activity: Array<{ type: string }>;
  }

  /** Waits (bounded) until `predicate` holds for what the page has seen. */
  async function until(page: Page, predicate: string, timeoutMs = 15_000): Promise<void> {
    await page.waitForFunction(`(() => { const seen = window.seen; return ${predicate}; })()`, null, {
      timeout: timeoutMs,
    });
  }

  const data = "['block','activity'].includes(m.type)";

  it.each(['msgpack', 'json'] as const)(
    'receives blocks and activity over %s and resumes after a cut',
    async (encoding) => {
      const { page, problems } = await openPage();
      const watched = [chain.address(0), chain.address(1)];
      try {
        await page.evaluate(
          ([url, enc, addresses]) => {
            (window as unknown as { start: (u: string, e: string, a: string[]) => void }).start(url, enc, addresses);
          },
          [`ws://127.0.0.1:${proxy.port}/v1`, encoding, watched] as [string, string, string[]],
        );
        // Both subscriptions are answered before the first block is mined.
        await until(page, 'seen.blocks.length > 0 && seen.activity.length > 0');
        await chain.transfer(0, watched[1] as string, 1000n);
        await chain.mine();
        await until(
          page,
          `seen.blocks.filter((m) => ${data}).length >= 1 && seen.activity.filter((m) => ${data}).length >= 1`,
        );

        await proxy.cut();
        await until(page, "seen.statuses.includes('closed')");
        await chain.transfer(1, watched[0] as string, 2000n);
        const missed = await chain.mine();
        await proxy.restore();
        await until(page, "seen.statuses.includes('recovered')");
        await until(
          page,
          `seen.blocks.filter((m) => ${data}).length >= 2 && seen.activity.filter((m) => ${data}).length >= 2`,
        );
        const seen = (await page.evaluate('window.seen')) as Seen;
        const blocks = seen.blocks.filter((m) => m.type === 'block');
        const node = await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [
          `0x${missed.toString(16)}`,
          false,
        ]);
        expect(blocks).toHaveLength(2);
        expect(blocks.at(-1)).toMatchObject({ number: missed, hash: node.hash });
        expect(seen.activity.filter((m) => m.type === 'activity')).toHaveLength(2);
        expect(seen.statuses.slice(0, 3)).toEqual(['connecting', 'open', 'closed']);
        expect(seen.statuses.slice(-3)).toEqual(['open', 'resuming', 'recovered']);
        expect(seen.errors).toEqual([]);
        // Chromium logs each refused connection attempt while the link is cut; nothing else may fail.
        expect(problems.filter((p) => !/WebSocket connection to .* failed/.test(p))).toEqual([]);
      } finally {
        await page.evaluate('window.client?.close()');
        await page.close();
        await proxy.restore();
      }
    },
  );
});
