import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { RpcFaultError } from '../src/domain/errors.ts';
import type { Hex } from '../src/domain/types.ts';
import { type TokenLookupOutcome, TokenMetadata, type TokenMetadataOptions } from '../src/ingest/TokenMetadata.ts';
import { TestChain } from './helpers/chain.ts';
import { artifact, type ContractName, deploy, deployedAddress } from './helpers/contracts.ts';
import { freePort } from './helpers/ports.ts';

// TokenMetadata against a real anvil and real token contracts (compiled from contracts/): the
// node's own answers, reverts and empty answers, through a `send` built on fetch.

const DEPLOYER = 9;

/**
 * A `send` to `url()` over HTTP, as RpcPool.send behaves for these tests: the `result`, a
 * JSON-RPC error object as a `node_error`, a refused connection as `transport`. Counts eth_calls.
 */
function httpSend(url: () => string): { send: TokenMetadataOptions['send']; ethCalls: () => number } {
  let ethCalls = 0;
  const send: TokenMetadataOptions['send'] = async (method, params) => {
    if (method === 'eth_call') ethCalls++;
    let response: Response;
    try {
      response = await fetch(url(), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      throw new RpcFaultError('transport', `${method}: no connection to the node`, { method, cause: error });
    }
    const body = (await response.json()) as { result?: unknown; error?: { code: number; message: string } };
    if (body.error !== undefined) {
      throw new RpcFaultError('node_error', `${method}: the node answered error ${body.error.code}`, {
        method,
        rpcCode: body.error.code,
        rpcMessage: body.error.message,
      });
    }
    return body.result;
  };
  return { send, ethCalls: () => ethCalls };
}

describe('token metadata read from a real node', () => {
  let anvil: Anvil;
  let chain: TestChain;
  const token = {} as Record<'TestERC20' | 'Bytes32Token' | 'RevertingToken' | 'TestERC721' | 'TestERC1155', Hex>;
  let eoa: Hex;

  beforeAll(async () => {
    artifact('TestERC20'); // compile before any test's clock starts
    anvil = await startAnvil({ noMining: true });
    chain = new TestChain(anvil.httpUrl);
    const names = Object.keys({
      TestERC20: 0,
      Bytes32Token: 0,
      RevertingToken: 0,
      TestERC721: 0,
      TestERC1155: 0,
    }) as Array<keyof typeof token & ContractName>;
    const hashes: string[] = [];
    for (const name of names) hashes.push(await deploy(chain, DEPLOYER, name, name === 'TestERC20' ? [0n] : []));
    await chain.mine();
    for (const [i, name] of names.entries()) token[name] = (await deployedAddress(chain, hashes[i] as string)) as Hex;
    eoa = chain.address(3) as Hex;
  });

  afterAll(async () => {
    chain?.close();
    await anvil?.close();
  });

  it('reads each kind of token once, with three eth_calls, and answers from the cache after', async () => {
    const { send, ethCalls } = httpSend(() => anvil.httpUrl);
    const outcomes: TokenLookupOutcome[] = [];
    const metadata = new TokenMetadata({ send, onLookup: (_, outcome) => outcomes.push(outcome) });
    const all = [...Object.values(token), eoa];
    for (const address of all) expect(metadata.get(address)).toBeUndefined();
    await metadata.idle();
    expect(ethCalls()).toBe(3 * all.length);

    expect(metadata.get(token.TestERC20)).toEqual({ symbol: 'TST', decimals: 18, name: 'Test Token' });
    expect(metadata.get(token.Bytes32Token)).toEqual({ symbol: 'MKR', decimals: 18, name: 'Maker' });
    expect(metadata.get(token.RevertingToken)).toEqual({ decimals: 6 });
    // An ERC-721 has a name and symbol but no decimals.
    expect(metadata.get(token.TestERC721)).toEqual({ symbol: 'TNFT', name: 'Test NFT' });
    expect(metadata.get(token.TestERC1155)).toEqual({});
    expect(metadata.get(eoa)).toEqual({});
    expect(outcomes.filter((o) => o === 'failed')).toEqual([]);

    for (const address of all) expect(metadata.get(address)).toBeDefined();
    await metadata.idle();
    expect(ethCalls()).toBe(3 * all.length);
    metadata.close();
  });

  it('caches nothing while the node is down, and reads the token after retryMs once it is back', async () => {
    const downUrl = `http://127.0.0.1:${await freePort()}`;
    let url = downUrl;
    const { send, ethCalls } = httpSend(() => url);
    let now = 0;
    const outcomes: TokenLookupOutcome[] = [];
    const metadata = new TokenMetadata({
      send,
      retryMs: 60_000,
      now: () => now,
      onLookup: (_, outcome) => outcomes.push(outcome),
    });
    expect(metadata.get(token.TestERC20)).toBeUndefined();
    await metadata.idle();
    expect(outcomes).toEqual(['failed']);
    expect(ethCalls()).toBe(3);

    url = anvil.httpUrl; // the node is back, but the token waits for retryMs
    now = 59_999;
    expect(metadata.get(token.TestERC20)).toBeUndefined();
    await metadata.idle();
    expect(ethCalls()).toBe(3);

    now = 60_000;
    expect(metadata.get(token.TestERC20)).toBeUndefined();
    await metadata.idle();
    expect(ethCalls()).toBe(6);
    expect(outcomes).toEqual(['failed', 'ok']);
    expect(metadata.get(token.TestERC20)).toEqual({ symbol: 'TST', decimals: 18, name: 'Test Token' });
    metadata.close();
  });
});
