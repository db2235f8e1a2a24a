import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runBlock, shellBlocks } from './helpers/readme.ts';

// README, "Run it in public": its shell blocks run as they are written, in a directory that
// holds the clone's package.json, sources and node_modules (so the files they make land there,
// not in the clone), and their documented answers are checked.

describe('README: Run it in public', () => {
  const blocks = shellBlocks('Run it in public');
  let dir: string;
  let gateway: ChildProcess | undefined;
  let output = '';

  /** Resolves once the gateway printed a line matching `pattern` (bounded). */
  const printed = (pattern: RegExp, timeoutMs = 30_000): Promise<void> =>
    new Promise((resolve, reject) => {
      if (pattern.test(output)) {
        resolve();
        return;
      }
      const done = (error?: Error): void => {
        clearTimeout(timer);
        gateway?.stdout?.off('data', onData);
        gateway?.stderr?.off('data', onData);
        gateway?.off('exit', onExit);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onData = (): void => {
        if (pattern.test(output)) done();
      };
      const onExit = (): void => done(new Error(`the gateway exited before printing ${pattern}:\n${output}`));
      const timer = setTimeout(
        () => done(new Error(`no output matching ${pattern} within ${timeoutMs} ms:\n${output}`)),
        timeoutMs,
      );
      gateway?.stdout?.on('data', onData);
      gateway?.stderr?.on('data', onData);
      gateway?.once('exit', onExit);
    });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'blockcast-public-'));
    for (const entry of ['package.json', 'src', 'node_modules', 'tsconfig.json']) {
      symlinkSync(join(ROOT, entry), join(dir, entry));
    }
  });

  afterAll(async () => {
    if (gateway?.pid !== undefined && gateway.exitCode === null) {
      const exited = new Promise((resolve) => gateway?.once('exit', resolve));
      process.kill(-gateway.pid, 'SIGTERM');
      const timer = setTimeout(() => gateway?.pid && process.kill(-gateway.pid, 'SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('has the blocks this test runs: setup, start, check, renew', () => {
    expect(blocks).toHaveLength(4);
    expect(blocks[1]).toMatch(/^npm start -- /);
  });

  it('makes a key, a keys file and a certificate; starts; answers as documented; reloads on SIGHUP', async () => {
    const [setup, start, check, renew] = blocks as [string, string, string, string];
    await runBlock(setup, dir);
    const keysFile = JSON.parse(readFileSync(join(dir, 'keys.json'), 'utf8')) as { keys: Array<{ sha256: string }> };
    expect(keysFile.keys[0]?.sha256).toMatch(/^[0-9a-f]{64}$/);

    // Its own process group, so that npm, its shell and the gateway all stop together.
    gateway = spawn('bash', ['-c', start], { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    gateway.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    gateway.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    await printed(/listening on wss:\/\/127\.0\.0\.1:8443\/v1/);
    expect(output).toMatch(/auth: a key or token is needed to connect \(wallet-web\); listening on 0\.0\.0\.0/);

    // Each command's answer is the comment under it.
    const answers = (await runBlock(check, dir)).trim().split('\n');
    const documented = [...check.matchAll(/^# (.+)$/gm)].map((m) => (m[1] as string).replace(/ \(.*\)$/, ''));
    expect(answers).toEqual(documented);
    expect(answers).toEqual(['ok', '401', '403', 'wallet-web 100']);

    const before = readFileSync(join(dir, 'tls.crt'), 'utf8');
    await runBlock(renew, dir);
    expect(readFileSync(join(dir, 'tls.crt'), 'utf8')).not.toBe(before);
    await printed(/tls: SIGHUP: reloaded the certificate \(sha256 /);
    // Still serving, with the new certificate.
    expect((await runBlock(check.split('\n').slice(0, 1).join('\n'), dir)).trim()).toBe('ok');
  });
});
