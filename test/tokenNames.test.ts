import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { artifact, call, deploy, deployedAddress } from './helpers/contracts.ts';
import { type GatewayProcess, scrapeMetrics, seriesValue } from './helpers/gateway.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const DEPLOYER = 0;
const ETHER = 10n ** 18n;

type Named = 'TestERC20' | 'Bytes32Token' | 'RevertingToken' | 'TestERC721' | 'TestERC1155';

describe('token names on transfer events (real anvil, real token contracts)', () => {
  let stack: Stack;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let client: TestClient;
  let sub: string;
  let holder: string;
  const token = {} as Record<Named, string>;

  beforeAll(async () => {
    artifact('TestERC20'); // compile before the clock of any test starts
    stack = await startStack({ node: { noMining: true }, transport: 'ws' });
    ({ gateway, chain } = stack);
    const names: Named[] = ['TestERC20', 'Bytes32Token', 'RevertingToken', 'TestERC721', 'TestERC1155'];
    const hashes: string[] = [];
    for (const name of names) hashes.push(await deploy(chain, DEPLOYER, name, name === 'TestERC20' ? [0n] : []));
    await chain.mine();
    for (const [i, name] of names.entries()) token[name] = await deployedAddress(chain, hashes[i] as string);
    holder = chain.address(4);
    client = await TestClient.connect(gateway.url, 'json');
    sub = await client.subscribe({ channel: 'activity', addresses: [holder] });
  });

  afterAll(async () => {
    client?.close();
    await stack?.close();
  });

  /** Mints to the holder on every token in one block; returns the holder's token events of that block by token. */
  async function mintAll(tokenId: bigint): Promise<Map<string, Message>> {
    await call(chain, DEPLOYER, 'TestERC20', token.TestERC20, 'mint', [holder, 1_250n * ETHER + ETHER / 2n]);
    await call(chain, DEPLOYER, 'Bytes32Token', token.Bytes32Token, 'mint', [holder, 5n * ETHER]);
    await call(chain, DEPLOYER, 'RevertingToken', token.RevertingToken, 'mint', [holder, 7_000_000n]);
    await call(chain, DEPLOYER, 'TestERC721', token.TestERC721, 'mint', [holder, tokenId]);
    await call(chain, DEPLOYER, 'TestERC1155', token.TestERC1155, 'mint', [holder, 1n, 3n]);
    const number = await chain.mine();
    const message = await client.next(
      (m) => m['sub'] === sub && m.type === 'activity' && (m['block'] as { number: number }).number === number,
      15_000,
    );
    const events = message['events'] as Message[];
    expect(events.map((e) => e['kind'])).toEqual(['erc20', 'erc20', 'erc20', 'erc721', 'erc1155']);
    return new Map(events.map((e) => [e['token'] as string, e]));
  }

  /** Waits (bounded) until ingest has looked up `count` tokens, whatever the outcome. */
  async function lookedUp(count: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (let tries = 0; tries < 200 && Date.now() < deadline; tries++) {
      const text = await scrapeMetrics(gateway);
      const done = ['ok', 'none', 'failed'].reduce(
        (sum, outcome) =>
          sum + (seriesValue(text, `blockcast_ingest_token_lookups_total{chain="31337",outcome="${outcome}"}`) ?? 0),
        0,
      );
      if (done >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`ingest did not look up ${count} tokens within 10 s`);
  }

  it('carries symbol, decimals and name once read: a normal ERC-20, a bytes32 one, one whose symbol() reverts, an NFT, and none for a token without them', async () => {
    const first = await mintAll(1n);
    // The first block may go without them (read in the background, never holding the block back).
    for (const event of first.values()) expect(event['value'] ?? event['tokenId']).toBeDefined();
    await lookedUp(5);
    const later = await mintAll(2n);
    expect(later.get(token.TestERC20)).toMatchObject({
      kind: 'erc20',
      value: `0x${(1_250n * ETHER + ETHER / 2n).toString(16)}`,
      symbol: 'TST',
      decimals: 18,
      name: 'Test Token',
    });
    expect(later.get(token.Bytes32Token)).toMatchObject({ symbol: 'MKR', decimals: 18, name: 'Maker' });
    const reverting = later.get(token.RevertingToken) as Message;
    expect(reverting['decimals']).toBe(6);
    expect(reverting).not.toHaveProperty('symbol');
    expect(reverting).not.toHaveProperty('name');
    const nft = later.get(token.TestERC721) as Message;
    expect(nft).toMatchObject({ kind: 'erc721', symbol: 'TNFT', name: 'Test NFT' });
    expect(nft).not.toHaveProperty('decimals');
    const multi = later.get(token.TestERC1155) as Message;
    for (const field of ['symbol', 'decimals', 'name']) expect(multi).not.toHaveProperty(field);
  });

  it('reads each token once: later blocks cost no more calls', async () => {
    const before = await scrapeMetrics(gateway);
    const count = (text: string) =>
      ['ok', 'none', 'failed'].reduce(
        (sum, outcome) =>
          sum + (seriesValue(text, `blockcast_ingest_token_lookups_total{chain="31337",outcome="${outcome}"}`) ?? 0),
        0,
      );
    await mintAll(3n);
    expect(count(await scrapeMetrics(gateway))).toBe(count(before));
    expect(seriesValue(before, 'blockcast_ingest_token_lookups_total{chain="31337",outcome="ok"}')).toBe(4);
    expect(seriesValue(before, 'blockcast_ingest_token_lookups_total{chain="31337",outcome="none"}')).toBe(1);
  });
});
