import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc } from './helpers/chain.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

// The SDK as a user gets it: `npm pack` (its prepack builds dist/), the tarball installed into an
// empty project from the npm cache, the README's example run with node against the real gateway,
// and a typed usage example checked with tsc against the shipped declarations.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGE_DIR = join(ROOT, 'packages/client');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const run = promisify(execFile);

/** Runs `command` (bounded); rejects with its output when it fails. */
async function sh(
  command: string,
  args: readonly string[],
  cwd: string,
  options: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<string> {
  try {
    const { stdout } = await run(command, args, {
      cwd,
      timeout: options.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
      env: { ...process.env, ...options.env },
      maxBuffer: 16 * 1_048_576,
    });
    return stdout;
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}:\n${stdout}\n${stderr}`, { cause: error });
  }
}

/** The code block after `<!-- example:NAME ... -->` in the README, verbatim. */
function readmeExample(name: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const m = new RegExp(`<!-- example:${name}\\b[^>]*-->\\n\`\`\`\\w*\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(readme);
  if (m === null) throw new Error(`README.md has no code block marked example:${name}`);
  return `${m[1]}\n`;
}

interface LockEntry {
  readonly version?: string;
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
}

/** `names` and everything they pull in, among `packages` (name → its dependencies). */
function closure(packages: ReadonlyMap<string, readonly string[]>, names: readonly string[]): Set<string> {
  const seen = new Set<string>();
  const visit = (n: string): void => {
    if (seen.has(n) || !packages.has(n)) return;
    seen.add(n);
    for (const dep of packages.get(n) ?? []) visit(dep);
  };
  for (const name of names) visit(name);
  return seen;
}

/** The packages of a lockfile's `packages` (top-level ones): name → entry. */
function lockPackages(file: string): Map<string, LockEntry> {
  const lock = JSON.parse(readFileSync(file, 'utf8')) as { packages: Record<string, LockEntry> };
  const out = new Map<string, LockEntry>();
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path.startsWith('node_modules/') && path.lastIndexOf('node_modules/') === 0) out.set(path.slice(13), entry);
  }
  return out;
}

/** Name → dependencies (optional ones too), of a lockfile's packages. */
function dependencyGraph(packages: ReadonlyMap<string, LockEntry>): Map<string, string[]> {
  return new Map(
    [...packages].map(([name, e]) => [
      name,
      [...Object.keys(e.dependencies ?? {}), ...Object.keys(e.optionalDependencies ?? {})],
    ]),
  );
}

const REPO_LOCK = lockPackages(join(ROOT, 'package-lock.json'));

/**
 * Pins `names` and what they pull in to the versions of the repository's lockfile, in the
 * project's lockfile: `npm install --offline` then takes their tarballs from the npm cache that
 * `npm ci` filled, with no registry metadata (which `npm ci` does not cache). A dependency the
 * repository does not lock is not pinned, and an offline install of it fails (ENOTCACHED).
 */
function pinFromRepoLock(project: string, names: readonly string[]): void {
  const file = join(project, 'package-lock.json');
  const lock: { packages: Record<string, LockEntry> } = existsSync(file)
    ? JSON.parse(readFileSync(file, 'utf8'))
    : { name: 'project', lockfileVersion: 3, requires: true, packages: { '': {} } };
  for (const name of closure(dependencyGraph(REPO_LOCK), names)) {
    lock.packages[`node_modules/${name}`] ??= REPO_LOCK.get(name) as LockEntry;
  }
  writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
}

/** Adds `names` at the repository's locked versions to the project's manifest, and installs them offline. */
async function addDependencies(project: string, field: string, names: readonly string[]): Promise<void> {
  const manifestFile = join(project, 'package.json');
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, Record<string, string>>;
  manifest[field] = {
    ...manifest[field],
    ...Object.fromEntries(names.map((name) => [name, `^${REPO_LOCK.get(name)?.version}`])),
  };
  writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  pinFromRepoLock(project, names);
  await sh('npm', ['install', '--offline', '--no-audit', '--no-fund'], project, { timeoutMs: 50_000 });
}

const TYPED_USAGE = `import {
  type ActivityEvent,
  type BlockMessage,
  ClientError,
  type ClientErrorCode,
  createClient,
  EVENT_KINDS,
  type ProtocolErrorCode,
  type ServerMessage,
} from '@blockcast/client';
import { WebSocket } from 'ws';

const client = createClient({ url: 'ws://localhost:8080/v1', WebSocket, encoding: 'json' });
const numbers: number[] = [];
const stop = client.subscribeBlocks({ confirmations: 2 }, (m) => {
  if (m.type === 'block') numbers.push(m.number satisfies BlockMessage['number']);
});
const unwatch = client.watchAddresses(['0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266'], { kinds: ['erc20'] }, (m) => {
  if (m.type !== 'activity') return;
  for (const e of m.events satisfies readonly ActivityEvent[]) if (e.kind === 'erc20') console.log(e.token, e.value);
});
const watched: Promise<{ readonly addresses: number }> = unwatch.update(['0x70997970c51812dc3a010c7d01b50e0d17dc79c8']);
const code: ProtocolErrorCode = 'TRY_AGAIN';
const clientCode: ClientErrorCode = code;
const error = new ClientError(clientCode, 'x');
const kinds: readonly string[] = EVENT_KINDS;
declare const message: ServerMessage;
if (message.type === 'error') console.log(message.code satisfies ProtocolErrorCode, message.retryAfterMs);
// @ts-expect-error: not an encoding of the protocol
createClient({ url: 'ws://x', encoding: 'xml' });
// @ts-expect-error: not an error code of the protocol
const wrong: ProtocolErrorCode = 'NOPE';
// @ts-expect-error: blocks have no events
client.subscribeBlocks({}, (m) => m.type === 'block' && m.events);
console.log(numbers, watched, error.code, kinds, wrong);
stop();
client.close();
`;

describe('the @blockcast/client package', () => {
  let work: string;
  let tarball: string;
  let project: string;
  let anvil: Anvil;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'blockcast-client-package-'));
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
  });

  afterAll(async () => {
    await gateway?.stop();
    await anvil?.close();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it('packs only the built modules, their declarations and the package files', async () => {
    const out = await sh('npm', ['pack', '--json', '--pack-destination', work], PACKAGE_DIR, { timeoutMs: 50_000 });
    // prepack's output comes first on stdout; npm's JSON report is the trailing array.
    const [report] = JSON.parse(out.slice(out.lastIndexOf('\n[') + 1)) as Array<{
      filename: string;
      size: number;
      unpackedSize: number;
      files: Array<{ path: string }>;
    }>;
    if (report === undefined) throw new Error(`npm pack printed no report:\n${out}`);
    tarball = join(work, report.filename);
    const files = report.files.map((f) => f.path).sort();
    console.log(
      `@blockcast/client tarball: ${report.size} bytes (${statSync(tarball).size} on disk), ` +
        `${report.unpackedSize} unpacked, ${files.length} files:\n  ${files.join('\n  ')}`,
    );
    expect(files).toContain('package.json');
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('dist/protocol.d.ts');
    for (const file of files) {
      expect(file, file).toMatch(/^(package\.json|README\.md|LICENSE|dist\/[A-Za-z]+\.(js|d\.ts))$/);
      expect(file, file).not.toMatch(/\.test\.|bench|contracts/);
    }
    expect(report.size).toBeLessThan(64 * 1024);
    // The package's own README shows the same example.
    expect(readFileSync(join(PACKAGE_DIR, 'README.md'), 'utf8')).toContain(readmeExample('client-sdk'));
  });

  it('installs with msgpackr as its only dependency', async () => {
    project = join(work, 'project');
    mkdirSync(project);
    await sh('npm', ['init', '-y'], project);
    const manifest = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(project, 'package.json'), `${JSON.stringify({ ...manifest, type: 'module' }, null, 2)}\n`);
    pinFromRepoLock(project, ['msgpackr']);
    await sh('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project, { timeoutMs: 50_000 });
    const installed = dependencyGraph(lockPackages(join(project, 'node_modules/.package-lock.json')));
    const allowed = new Set(['@blockcast/client', ...closure(installed, ['msgpackr'])]);
    expect([...installed.keys()].filter((name) => !allowed.has(name))).toEqual([]);
    expect(installed.get('@blockcast/client')).toEqual(['msgpackr']);
    expect(readdirSync(join(project, 'node_modules/@blockcast/client/dist'))).toContain('index.js');
  });

  it("runs the README's example: it prints the next block", async () => {
    // ws is the SDK's optional peer, what a Node 20 user installs beside it (from the npm cache here).
    await addDependencies(project, 'dependencies', ['ws']);
    writeFileSync(join(project, 'example.js'), readmeExample('client-sdk'));
    const mining = setInterval(() => {
      rpc(anvil.httpUrl, 'evm_mine').catch(() => undefined);
    }, 200);
    try {
      const stdout = await sh(process.execPath, ['example.js'], project, {
        timeoutMs: 20_000,
        env: { BLOCKCAST_URL: gateway.url },
      });
      const m = /^block (\d+) (0x[0-9a-f]{64})$/m.exec(stdout);
      expect(m, stdout).not.toBeNull();
      const block = await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [
        `0x${Number(m?.[1]).toString(16)}`,
        false,
      ]);
      expect(block.hash).toBe(m?.[2]);
    } finally {
      clearInterval(mining);
    }
  });

  it("type-checks a typed usage example and the README's longer example against the shipped declarations", async () => {
    await addDependencies(project, 'devDependencies', ['@types/ws']);
    writeFileSync(join(project, 'usage.ts'), TYPED_USAGE);
    writeFileSync(join(project, 'more.ts'), readmeExample('client-sdk-more'));
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2022', 'DOM'],
          strict: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          skipLibCheck: false,
          types: [],
        },
        files: ['usage.ts', 'more.ts'],
      }),
    );
    await sh(process.execPath, [TSC, '--noEmit', '-p', 'tsconfig.json'], project, { timeoutMs: 60_000 });
  });
});
