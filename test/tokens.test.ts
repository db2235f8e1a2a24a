import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestChain } from './helpers/chain.ts';
import type { Encoding } from './helpers/client.ts';
import { artifact, call, deploy, deployedAddress, expectedActivity, type WireEvent } from './helpers/contracts.ts';
import type { GatewayProcess } from './helpers/gateway.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { Watcher } from './helpers/watcher.ts';

const ZERO = `0x${'0'.repeat(40)}`;
const ETHER = 10n ** 18n;
const X = 0;
const Y = 1;
const Z = 2;
const DEPLOYER = 9;

function hex(n: bigint): string {
  return `0x${n.toString(16)}`;
}

// Anvil mines only on evm_mine, so every block's content is chosen by the test. Token contracts
// are compiled from contracts/ by solc-js and deployed once per gateway.
describe.each([
  ['json', 'http'],
  ['msgpack', 'ws'],
] as const)('token activity end to end (%s frames, %s RPC)', (encoding: Encoding, transport) => {
  let stack: Stack;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let x: string;
  let y: string;
  let z: string;
  let w: string;
  const token: Record<'TestERC20' | 'TestERC721' | 'TestERC1155', string> = {
    TestERC20: '',
    TestERC721: '',
    TestERC1155: '',
  };
  const open: Watcher[] = [];

  beforeAll(async () => {
    artifact('TestERC20'); // compile before the clock of any test starts
    // Token metadata has its own test (tokenNames): here events are compared with the receipts alone.
    stack = await startStack({ node: { noMining: true }, transport, args: ['--token-metadata', 'off'] });
    ({ gateway, chain } = stack);
    [x, y, z, w] = [chain.address(X), chain.address(Y), chain.address(Z), chain.address(3)];
    const names = ['TestERC20', 'TestERC721', 'TestERC1155'] as const;
    const hashes: string[] = [];
    for (const name of names) hashes.push(await deploy(chain, DEPLOYER, name, name === 'TestERC20' ? [0n] : []));
    await chain.mine();
    for (const [i, name] of names.entries()) token[name] = await deployedAddress(chain, hashes[i] as string);
  });

  afterAll(async () => {
    for (const watcher of open) watcher.close();
    await stack?.close();
  });

  async function watch(addresses: string[], options: Record<string, unknown> = {}): Promise<Watcher> {
    const watcher = await Watcher.start(gateway.url, encoding, addresses, options);
    open.push(watcher);
    return watcher;
  }

  /** Sends the calls in order, mines them into one block, and returns its number and the hashes. */
  async function mineWith(sends: Array<() => Promise<string>>): Promise<{ number: number; hashes: string[] }> {
    const hashes: string[] = [];
    for (const send of sends) hashes.push(await send());
    const number = await chain.mine();
    for (const hash of hashes) expect((await chain.receipt(hash)).blockNumber).toBe(number);
    return { number, hashes };
  }

  /** Mines an empty block and waits until every watcher has it: all earlier blocks' messages are in. */
  async function barrier(watchers: Watcher[]): Promise<void> {
    const next = await chain.mine();
    await Promise.all(watchers.map((watcher) => watcher.through(next)));
  }

  /** Each watcher got, for each block, exactly what ethers decodes from the receipts for it. */
  async function expectExactly(watchers: Array<[Watcher, string[]]>, blocks: number[]): Promise<void> {
    for (const number of blocks) {
      for (const [watcher, addresses] of watchers) {
        const expected = await expectedActivity(chain, number, addresses);
        expect(watcher.eventsAt(number), `block ${number}, watcher of ${addresses.join(',')}`).toEqual(expected);
        expect(watcher.activityAt(number)).toHaveLength(expected.length === 0 ? 0 : 1);
      }
    }
  }

  const kinds = (events: WireEvent[]): string[] => events.map((e) => e['kind'] as string);

  it('delivers ERC-20 mints and transfers to the watchers of sender and receiver only', async () => {
    const [a, b, c, d] = await Promise.all([watch([x]), watch([y]), watch([z]), watch([w])]);
    const erc20 = token.TestERC20;
    const first = await mineWith([
      () => call(chain, X, 'TestERC20', erc20, 'mint', [x, 1000n * ETHER]),
      () => call(chain, X, 'TestERC20', erc20, 'transfer', [y, 250n * ETHER]),
      () => call(chain, Y, 'TestERC20', erc20, 'approve', [z, 100n * ETHER]),
    ]);
    // z moves y's tokens to x: z is the spender, not a party of the transfer.
    const second = await mineWith([() => call(chain, Z, 'TestERC20', erc20, 'transferFrom', [y, x, 100n * ETHER])]);
    await barrier([a, b, c, d]);

    await expectExactly(
      [
        [a, [x]],
        [b, [y]],
        [c, [z]],
        [d, [w]],
      ],
      [first.number, second.number],
    );
    const [mintTx, transferTx] = first.hashes;
    expect(a.eventsAt(first.number).filter((e) => e['kind'] === 'erc20')).toEqual([
      expect.objectContaining({ txHash: mintTx, token: erc20, from: ZERO, to: x, value: hex(1000n * ETHER) }),
      expect.objectContaining({ txHash: transferTx, token: erc20, from: x, to: y, value: hex(250n * ETHER) }),
    ]);
    expect(kinds(b.eventsAt(first.number)).sort()).toEqual(['erc20', 'tx']);
    expect(kinds(c.eventsAt(second.number))).toEqual(['tx']);
    expect(b.eventsAt(second.number)).toEqual([expect.objectContaining({ kind: 'erc20', from: y, to: x })]);
    expect(d.client.of(d.activitySub, 'activity')).toEqual([]);
  });

  it('delivers ERC-721 mints, transfers and burns with the token id', async () => {
    const [a, b, c, d] = await Promise.all([watch([x]), watch([y]), watch([z]), watch([w])]);
    const erc721 = token.TestERC721;
    const first = await mineWith([
      () => call(chain, X, 'TestERC721', erc721, 'mint', [x, 7n]),
      () => call(chain, X, 'TestERC721', erc721, 'mint', [x, 2n ** 200n]),
      () => call(chain, X, 'TestERC721', erc721, 'transferFrom', [x, y, 7n]),
      () => call(chain, X, 'TestERC721', erc721, 'setApprovalForAll', [z, true]),
    ]);
    const second = await mineWith([
      () => call(chain, Y, 'TestERC721', erc721, 'burn', [7n]),
      () => call(chain, Z, 'TestERC721', erc721, 'transferFrom', [x, w, 2n ** 200n]),
    ]);
    await barrier([a, b, c, d]);

    await expectExactly(
      [
        [a, [x]],
        [b, [y]],
        [c, [z]],
        [d, [w]],
      ],
      [first.number, second.number],
    );
    expect(b.eventsAt(first.number)).toEqual([
      expect.objectContaining({ kind: 'erc721', token: erc721, from: x, to: y, tokenId: '0x7' }),
    ]);
    expect(kinds(b.eventsAt(second.number))).toEqual(['tx', 'erc721']);
    expect(b.eventsAt(second.number)[1]).toMatchObject({ from: y, to: ZERO, tokenId: '0x7' });
    expect(d.eventsAt(second.number)).toEqual([
      expect.objectContaining({ kind: 'erc721', from: x, to: w, tokenId: hex(2n ** 200n) }),
    ]);
    expect(kinds(c.eventsAt(second.number))).toEqual(['tx']);
  });

  it('delivers ERC-1155 single and batch transfers item by item, carrying the operator without matching it', async () => {
    const [a, b, c, d] = await Promise.all([watch([x]), watch([y]), watch([z]), watch([w])]);
    const erc1155 = token.TestERC1155;
    const first = await mineWith([
      () => call(chain, X, 'TestERC1155', erc1155, 'mint', [x, 1n, 100n]),
      () => call(chain, X, 'TestERC1155', erc1155, 'mintBatch', [x, [2n, 3n, 4n], [10n, 20n, 30n]]),
      () => call(chain, X, 'TestERC1155', erc1155, 'setApprovalForAll', [z, true]),
    ]);
    const second = await mineWith([
      () => call(chain, Z, 'TestERC1155', erc1155, 'safeBatchTransferFrom', [x, y, [2n, 3n, 4n], [1n, 2n, 3n], '0x']),
      () => call(chain, Z, 'TestERC1155', erc1155, 'safeTransferFrom', [x, y, 1n, 40n, '0x']),
    ]);
    await barrier([a, b, c, d]);

    await expectExactly(
      [
        [a, [x]],
        [b, [y]],
        [c, [z]],
        [d, [w]],
      ],
      [first.number, second.number],
    );
    expect(kinds(a.eventsAt(first.number))).toEqual(['tx', 'erc1155', 'tx', 'erc1155', 'erc1155', 'erc1155', 'tx']);
    const [batchTx, singleTx] = second.hashes;
    const received = b.eventsAt(second.number);
    expect(received.map((e) => e['id'])).toEqual([
      `${batchTx}:0:0`,
      `${batchTx}:0:1`,
      `${batchTx}:0:2`,
      `${singleTx}:1`,
    ]);
    expect(received.map((e) => [e['operator'], e['from'], e['to'], e['tokenId'], e['value']])).toEqual([
      [z, x, y, '0x2', '0x1'],
      [z, x, y, '0x3', '0x2'],
      [z, x, y, '0x4', '0x3'],
      [z, x, y, '0x1', '0x28'],
    ]);
    // The operator sent the transactions (tx events) but is no party of the transfers.
    expect(kinds(c.eventsAt(second.number))).toEqual(['tx', 'tx']);
    expect(d.client.of(d.activitySub, 'activity')).toEqual([]);
  });

  it('puts the ETH and token transfers of one block into one activity message', async () => {
    const [a, b] = await Promise.all([watch([x]), watch([y])]);
    const block = await mineWith([
      () => chain.transfer(X, y, 12_345n),
      () => call(chain, X, 'TestERC20', token.TestERC20, 'mint', [x, 50n]),
      () => call(chain, X, 'TestERC20', token.TestERC20, 'transfer', [y, 50n]),
      () => call(chain, X, 'TestERC721', token.TestERC721, 'mint', [y, 100n]),
      () => call(chain, X, 'TestERC1155', token.TestERC1155, 'mintBatch', [y, [5n, 6n], [1n, 1n]]),
    ]);
    await barrier([a, b]);

    expect(b.activityAt(block.number)).toHaveLength(1);
    expect(kinds(b.eventsAt(block.number))).toEqual(['tx', 'erc20', 'erc721', 'erc1155', 'erc1155']);
    expect(b.eventsAt(block.number)[0]).toMatchObject({ kind: 'tx', txHash: block.hashes[0], value: hex(12_345n) });
    expect(a.activityAt(block.number)).toHaveLength(1);
    expect(kinds(a.eventsAt(block.number))).toEqual(['tx', 'tx', 'erc20', 'tx', 'erc20', 'tx', 'tx']);
    await expectExactly(
      [
        [a, [x]],
        [b, [y]],
      ],
      [block.number],
    );
  });

  it('filters by kinds', async () => {
    const client = (await watch([w])).client;
    const subs = {
      erc20: await client.subscribe({ channel: 'activity', addresses: [y], kinds: ['erc20'] }),
      tx: await client.subscribe({ channel: 'activity', addresses: [y], kinds: ['tx'] }),
      nft: await client.subscribe({ channel: 'activity', addresses: [y], kinds: ['erc721', 'erc1155'] }),
      erc1155: await client.subscribe({ channel: 'activity', addresses: [y], kinds: ['erc1155'] }),
    };
    const watcher = open[open.length - 1] as Watcher;
    const block = await mineWith([
      () => chain.transfer(X, y, 1n),
      () => call(chain, X, 'TestERC20', token.TestERC20, 'mint', [y, 3n]),
      () => call(chain, X, 'TestERC721', token.TestERC721, 'mint', [y, 101n]),
    ]);
    await barrier([watcher]);
    expect(kinds(watcher.eventsAt(block.number, subs.erc20))).toEqual(['erc20']);
    expect(kinds(watcher.eventsAt(block.number, subs.tx))).toEqual(['tx']);
    expect(kinds(watcher.eventsAt(block.number, subs.nft))).toEqual(['erc721']);
    expect(watcher.activityAt(block.number, subs.erc1155)).toEqual([]);
  });

  it('reports the created contract on the deployer’s tx event, and a watch on it sees later activity', async () => {
    const deployerWatch = await watch([chain.address(8)]);
    const deployed = await mineWith([() => deploy(chain, 8, 'TestERC20', [500n])]);
    const [hash] = deployed.hashes;
    const address = await deployedAddress(chain, hash as string);
    await barrier([deployerWatch]);
    expect(deployerWatch.eventsAt(deployed.number)).toEqual([
      expect.objectContaining({ kind: 'tx', id: hash, to: null, contractAddress: address, status: 1 }),
      expect.objectContaining({ kind: 'erc20', token: address, from: ZERO, to: chain.address(8), value: '0x1f4' }),
    ]);

    const contractWatch = await watch([address]);
    const later = await mineWith([() => call(chain, X, 'TestERC20', address, 'mint', [y, 1n])]);
    await barrier([contractWatch, deployerWatch]);
    expect(contractWatch.eventsAt(later.number)).toEqual([
      expect.objectContaining({ kind: 'tx', txHash: later.hashes[0], from: x, to: address, status: 1 }),
    ]);
    // The token itself is not a party of its transfers: its watcher gets the calls, not the moves.
    expect(deployerWatch.activityAt(later.number)).toEqual([]);
  });
});
