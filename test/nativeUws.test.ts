import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { type GatewayProcess, runGatewayToExit, startGateway } from './helpers/gateway.ts';

describe('uWebSockets.js native binary', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl]);
  });

  afterAll(async () => {
    await gateway?.stop();
    await anvil?.close();
  });

  it('is the module the running gateway has mapped', () => {
    const pid = gateway.process.pid as number;
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    const abi = process.versions.modules;
    const native = new RegExp(`/binaries/uws_${process.platform}_${process.arch}_${abi}\\.node$`, 'm');
    expect(maps).toMatch(native);
  });

  it('is required: on the JavaScript fallback the gateway refuses to start', async () => {
    // The package's own switch forces its fallback; the gateway must notice and exit.
    const { code, output } = await runGatewayToExit(['--rpc', anvil.httpUrl, '--port', '0'], { UWS_USE_FALLBACK: '1' });
    expect(code).toBe(1);
    expect(output).toContain('NATIVE_UWS_MISSING');
  });
});
