import {
  Contract,
  type ContractEventPayload,
  type Log as EthersLog,
  type EventLog,
  type Wallet,
  WebSocketProvider,
} from 'ethers';
import {
  type Address,
  createPublicClient,
  encodeFunctionData,
  type Hash,
  type OnBlockParameter,
  parseAbi,
  parseAbiItem,
  type WatchEventOnLogsParameter,
  webSocket,
} from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { artifact, call, deploy, deployedAddress } from './helpers/contracts.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

/** Longest wait for one thing a client should receive, in ms. */
const WAIT_MS = 15_000;
/** Blocks of traffic (token transfers, mints, ETH transfers) mined before the comparisons. */
const ROUNDS = 4;

const TRANSFER = parseAbiItem('event Transfer(address indexed from, address indexed to, uint256 value)');
const TOKEN_ABI = parseAbi([
  'function balanceOf(address owner) view returns (uint256)',
  'function totalSupply() view returns (uint256)',
]);

type TransferLog = WatchEventOnLogsParameter<typeof TRANSFER>[number];
type ViemBlock = OnBlockParameter<undefined>;
/** A `newHeads` notification's result as it came over the wire. */
type RawHead = Record<string, unknown>;

/** What a listener was given, in order, and bounded waits on it. */
class Recorder<T> {
  readonly items: T[] = [];
  readonly #wake = new Set<() => void>();

  readonly add = (item: T): void => {
    this.items.push(item);
    for (const wake of [...this.#wake]) wake();
  };

  /** Resolves once `done(items)` holds; rejects after `timeoutMs` naming `what`. */
  until(done: (items: readonly T[]) => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> {
    if (done(this.items)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!done(this.items)) return;
        clearTimeout(timer);
        this.#wake.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#wake.delete(check);
        reject(new Error(`${what}: not within ${timeoutMs} ms (${this.items.length} received)`));
      }, timeoutMs);
      this.#wake.add(check);
    });
  }
}

function createViemClient(url: string) {
  return createPublicClient({ transport: webSocket(url) });
}

/** One WebSocket endpoint (the gateway's /rpc or anvil's own) as a viem app and an ethers app see it. */
interface Side {
  readonly name: 'gateway' | 'anvil';
  readonly viem: ReturnType<typeof createViemClient>;
  readonly ethers: WebSocketProvider;
  /** `newHeads` results, raw (viem's `transport.subscribe`). */
  readonly heads: Recorder<RawHead>;
  /** viem `watchBlocks`. */
  readonly blocks: Recorder<ViemBlock>;
  /** viem `watchEvent` of the token's `Transfer`. */
  readonly logs: Recorder<TransferLog>;
  /** viem `watchEvent` of the token's `Transfer` to one address (a topic filter with a null position). */
  readonly logsToTwo: Recorder<TransferLog>;
  /** viem `watchPendingTransactions`. */
  readonly pending: Recorder<Hash>;
  /** ethers `provider.on('block')`. */
  readonly ethersBlocks: Recorder<number>;
  /** ethers `new Contract(token, abi, provider).on('Transfer')`: the payload's log and decoded args. */
  readonly ethersTransfers: Recorder<{ log: EventLog; args: unknown[] }>;
  /** ethers `provider.on('pending')`. */
  readonly ethersPending: Recorder<string>;
  /** ethers orphan events of removed logs (see the reorg test). */
  readonly orphans: Recorder<EthersLog>;
  /** Errors any of the above reported. */
  readonly errors: Recorder<unknown>;
  readonly stops: Array<() => void>;
}

async function openSide(name: Side['name'], url: string): Promise<Side> {
  const side: Side = {
    name,
    viem: createViemClient(url),
    ethers: new WebSocketProvider(url),
    heads: new Recorder(),
    blocks: new Recorder(),
    logs: new Recorder(),
    logsToTwo: new Recorder(),
    pending: new Recorder(),
    ethersBlocks: new Recorder(),
    ethersTransfers: new Recorder(),
    ethersPending: new Recorder(),
    orphans: new Recorder(),
    errors: new Recorder(),
    stops: [],
  };
  const { unsubscribe } = await side.viem.transport.subscribe({
    params: ['newHeads'],
    onData: (data) => {
      if (data.result !== undefined) side.heads.add(data.result as RawHead);
    },
    onError: side.errors.add,
  });
  side.stops.push(() => void unsubscribe());
  side.stops.push(side.viem.watchBlocks({ onBlock: side.blocks.add, onError: side.errors.add }));
  side.stops.push(
    side.viem.watchPendingTransactions({
      onTransactions: (hashes) => {
        for (const hash of hashes) side.pending.add(hash);
      },
      onError: side.errors.add,
    }),
  );
  await side.ethers.on('error', side.errors.add);
  await side.ethers.on('block', side.ethersBlocks.add);
  await side.ethers.on('pending', side.ethersPending.add);
  return side;
}

/** Starts the token's `Transfer` listeners of both libraries on one side. */
async function watchToken(side: Side, token: Address, two: Address): Promise<void> {
  const record = (recorder: Recorder<TransferLog>) => (logs: TransferLog[]) => {
    for (const log of logs) recorder.add(log);
  };
  side.stops.push(
    side.viem.watchEvent({ address: token, event: TRANSFER, onLogs: record(side.logs), onError: side.errors.add }),
    side.viem.watchEvent({
      address: token,
      event: TRANSFER,
      args: { to: two },
      onLogs: record(side.logsToTwo),
      onError: side.errors.add,
    }),
  );
  const contract = new Contract(token, artifact('TestERC20').iface, side.ethers);
  await contract.on('Transfer', (...args: unknown[]) => {
    const payload = args.at(-1) as ContractEventPayload;
    side.ethersTransfers.add({ log: payload.log, args: args.slice(0, -1) });
  });
}

async function closeSide(side: Side): Promise<void> {
  for (const stop of side.stops) stop();
  (await side.viem.transport.getRpcClient()).close();
  await side.ethers.destroy();
}

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A log's place in the chain: what both endpoints' logs are compared by. */
function logKey(log: { blockNumber: bigint | number | null; logIndex?: number | null; index?: number }): string {
  return `${log.blockNumber}:${log.logIndex ?? log.index}`;
}

/** Orders logs by their place in the chain. */
function byPlace<T extends { blockNumber: bigint | number | null; logIndex?: number | null; index?: number }>(
  logs: readonly T[],
): T[] {
  const place = (l: T): [number, number] => [Number(l.blockNumber), Number(l.logIndex ?? l.index)];
  return [...logs].sort((a, b) => place(a)[0] - place(b)[0] || place(a)[1] - place(b)[1]);
}

describe('viem and ethers over /rpc get what they get from anvil’s own WebSocket', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let gw: Side;
  let node: Side;
  let sides: Side[] = [];
  let token: Address;
  /** The first block every listener of both sides was live for, and the last block mined by the rounds. */
  let firstBlock: number;
  let lastBlock: number;
  /** Every transaction the test sent while the mempool listeners ran. */
  const sent: Hash[] = [];

  /** Waits until every mempool listener of both sides announced each of `hashes`. */
  async function sawPending(hashes: readonly string[]): Promise<void> {
    await Promise.all(
      sides.flatMap((side) => [
        side.pending.until((seen) => hashes.every((h) => seen.includes(h as Hash)), `${side.name} viem pending`),
        side.ethersPending.until((seen) => hashes.every((h) => seen.includes(h)), `${side.name} ethers pending`),
      ]),
    );
  }

  /**
   * Waits until every block listener of both sides got the node's block `number`, and every
   * `Transfer` listener all its token logs (counted by the node's eth_getLogs).
   */
  async function sawBlock(number: number): Promise<string> {
    const block = await rpc<{ hash: Hash }>(anvil.httpUrl, 'eth_getBlockByNumber', [hex(number), false]);
    const logs =
      token === undefined
        ? []
        : await rpc<unknown[]>(anvil.httpUrl, 'eth_getLogs', [{ blockHash: block.hash, address: token }]);
    const live = (l: { blockHash: string | null; removed: boolean }): boolean =>
      l.blockHash === block.hash && !l.removed;
    await Promise.all(
      sides.flatMap((side) => [
        side.heads.until((hs) => hs.some((h) => h['hash'] === block.hash), `${side.name} newHeads ${number}`),
        side.blocks.until((bs) => bs.some((b) => b.hash === block.hash), `${side.name} watchBlocks ${number}`),
        side.ethersBlocks.until((ns) => ns.includes(number), `${side.name} ethers block ${number}`),
        ...(token === undefined
          ? []
          : [
              side.logs.until((ls) => ls.filter(live).length >= logs.length, `${side.name} watchEvent ${number}`),
              side.ethersTransfers.until(
                (ts) => ts.filter((t) => live(t.log)).length >= logs.length,
                `${side.name} ethers Transfer ${number}`,
              ),
            ]),
      ]),
    );
    return block.hash;
  }

  /** Sends a token transfer, a mint and an ETH transfer, waits for them as pending everywhere, mines them, waits for the block everywhere. */
  async function trafficRound(i: number): Promise<number> {
    const hashes = [
      await call(chain, 0, 'TestERC20', token, 'transfer', [chain.address(1 + (i % 3)), 1_000n + BigInt(i)]),
      await call(chain, 3, 'TestERC20', token, 'mint', [chain.address(2), 7n + BigInt(i)]),
      await chain.transfer(1, chain.address(4), 10n ** 15n + BigInt(i)),
    ] as Hash[];
    sent.push(...hashes);
    await sawPending(hashes);
    const number = await chain.mine();
    await sawBlock(number);
    return number;
  }

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '100']);
    chain = new TestChain(anvil.httpUrl);
    gw = await openSide('gateway', gateway.url.replace(/\/v1$/, '/rpc'));
    node = await openSide('anvil', anvil.wsUrl);
    sides = [gw, node];
    // The deployment is the first transaction: every block and mempool listener is live once both sides announce it.
    const deployment = (await deploy(chain, 0, 'TestERC20', [10n ** 24n])) as Hash;
    sent.push(deployment);
    await sawPending([deployment]);
    firstBlock = await chain.mine();
    await sawBlock(firstBlock);
    token = (await deployedAddress(chain, deployment)) as Address;
    // The gateway holds the deployment's block now: its Transfer subscriptions start after it, as anvil's do.
    for (const side of sides) await watchToken(side, token, chain.address(2) as Address);
    for (let i = 0; i < ROUNDS; i++) lastBlock = await trafficRound(i);
  });

  afterAll(async () => {
    for (const side of sides) await closeSide(side);
    chain?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  it('viem: watchBlocks, raw newHeads and watchPendingTransactions deliver every block and transaction as from anvil', () => {
    const blocks = range(firstBlock, lastBlock);
    for (const side of sides) expect(side.errors.items).toEqual([]);
    // Every block once, in order, none skipped (the gateway's sequence has no gaps).
    expect(gw.heads.items.map((h) => Number(h['number']))).toEqual(blocks);
    expect(gw.blocks.items.map((b) => Number(b.number))).toEqual(blocks);
    // The same header objects and the same formatted blocks as anvil's, by number over the same range.
    const within = <T>(items: readonly T[], numberOf: (t: T) => number): T[] =>
      items.filter((t) => numberOf(t) >= firstBlock && numberOf(t) <= lastBlock);
    expect(within(node.heads.items, (h) => Number(h['number']))).toEqual(gw.heads.items);
    expect(within(node.blocks.items, (b) => Number(b.number))).toEqual(gw.blocks.items);
    // The blocks carry the traffic: the deployment, then three transactions each.
    expect(gw.blocks.items.map((b) => b.transactions.length)).toEqual([1, ...Array(ROUNDS).fill(3)]);
    // Every transaction the test sent was announced by both.
    for (const side of sides) expect(side.pending.items).toEqual(expect.arrayContaining(sent));
    expect(new Set(gw.pending.items).size).toBe(gw.pending.items.length);
  });

  it('viem: watchEvent delivers every Transfer log of the token as from anvil, with and without an argument filter', async () => {
    const reference = await rpc<Array<{ blockNumber: string; logIndex: string }>>(anvil.httpUrl, 'eth_getLogs', [
      { fromBlock: hex(firstBlock + 1), toBlock: hex(lastBlock), address: token },
    ]);
    // Two Transfer logs per round: the transfer and the mint.
    expect(reference).toHaveLength(2 * ROUNDS);
    for (const side of sides) {
      expect(side.logs.items.map(logKey)).toEqual(
        reference.map((l) => `${Number(l.blockNumber)}:${Number(l.logIndex)}`),
      );
      expect(side.logs.items.every((l) => !l.removed && l.eventName === 'Transfer')).toBe(true);
    }
    // Deep equal, by block number and log index.
    const keyed = (logs: readonly TransferLog[]) => Object.fromEntries(logs.map((l) => [logKey(l), l]));
    expect(keyed(gw.logs.items)).toEqual(keyed(node.logs.items));
    expect(gw.logs.items).toEqual(node.logs.items);
    // args.to filters on the third topic: the mints to wallet 2 and the transfers that went to it.
    const two = chain.address(2);
    expect(gw.logsToTwo.items).toEqual(node.logsToTwo.items);
    expect(gw.logsToTwo.items).toEqual(gw.logs.items.filter((l) => l.args.to?.toLowerCase() === two));
    expect(gw.logsToTwo.items.length).toBeGreaterThan(ROUNDS);
  });

  it('ethers: block, contract Transfer and pending listeners deliver what they deliver from anvil', () => {
    for (const side of sides) expect(side.errors.items).toEqual([]);
    const blocks = range(firstBlock, lastBlock);
    expect(gw.ethersBlocks.items).toEqual(blocks);
    expect(node.ethersBlocks.items.filter((n) => n >= firstBlock && n <= lastBlock)).toEqual(blocks);
    const transfers = (side: Side) => side.ethersTransfers.items.map((t) => ({ log: t.log.toJSON(), args: t.args }));
    expect(transfers(gw)).toHaveLength(2 * ROUNDS);
    expect(transfers(gw)).toEqual(transfers(node));
    // The decoded arguments are the ones viem decoded from the same logs.
    expect(gw.ethersTransfers.items.map((t) => t.args.map(String))).toEqual(
      gw.logs.items.map((l) => [l.args.from, l.args.to, String(l.args.value)]),
    );
    for (const side of sides) expect(side.ethersPending.items).toEqual(expect.arrayContaining(sent));
  });

  it('viem: getBlock, getBalance, readContract and call answer as anvil does', async () => {
    const ask = (side: Side) => {
      const client = side.viem;
      const addresses = range(0, 4).map((i) => chain.address(i) as Address);
      return Promise.all([
        client.getChainId(),
        client.getBlockNumber({ cacheTime: 0 }),
        client.getBlock(),
        Promise.all(range(firstBlock, lastBlock).map((n) => client.getBlock({ blockNumber: BigInt(n) }))),
        client.getBlock({ blockNumber: BigInt(lastBlock), includeTransactions: true }),
        Promise.all(addresses.map((address) => client.getBalance({ address }))),
        Promise.all(addresses.map((address) => client.getBalance({ address, blockNumber: BigInt(firstBlock) }))),
        Promise.all(
          addresses.map((owner) =>
            client.readContract({ address: token, abi: TOKEN_ABI, functionName: 'balanceOf', args: [owner] }),
          ),
        ),
        client.call({ to: token, data: encodeFunctionData({ abi: TOKEN_ABI, functionName: 'totalSupply' }) }),
        client.getTransactionReceipt({ hash: sent.at(-1) as Hash }),
      ]);
    };
    const [fromGateway, fromAnvil] = await Promise.all([ask(gw), ask(node)]);
    expect(fromGateway).toEqual(fromAnvil);
    const [chainId, head, latest, blocks, full, , , tokenBalances, supply] = fromGateway;
    expect(chainId).toBe(31_337);
    expect(head).toBe(BigInt(lastBlock));
    expect(latest.number).toBe(BigInt(lastBlock));
    // Blocks by hash too (answered from what the gateway holds).
    const byHash = await Promise.all(blocks.map((b) => gw.viem.getBlock({ blockHash: b.hash })));
    expect(byHash).toEqual(blocks);
    expect(blocks).toEqual(gw.blocks.items);
    expect(full.transactions.map((tx) => tx.hash)).toEqual(latest.transactions);
    expect(tokenBalances[1]).toBeGreaterThan(0n);
    expect(BigInt(supply.data ?? '0x0')).toBe(10n ** 24n + BigInt(ROUNDS * 7 + (ROUNDS * (ROUNDS - 1)) / 2));
  });

  it('ethers: getBlock, getBalance and a contract call answer as anvil does', async () => {
    const ask = async (side: Side) => {
      const provider = side.ethers;
      const contract = new Contract(token, artifact('TestERC20').iface, provider);
      const addresses = range(0, 4).map((i) => chain.address(i));
      const blocks = await Promise.all(range(firstBlock, lastBlock).map((n) => provider.getBlock(n)));
      const withTxs = await provider.getBlock(lastBlock, true);
      return {
        network: (await provider.getNetwork()).chainId,
        head: await provider.getBlockNumber(),
        blocks: blocks.map((b) => b?.toJSON()),
        latest: (await provider.getBlock('latest'))?.toJSON(),
        prefetched: withTxs?.prefetchedTransactions.map((tx) => tx.toJSON()),
        balances: await Promise.all(addresses.map((a) => provider.getBalance(a))),
        balancesThen: await Promise.all(addresses.map((a) => provider.getBalance(a, firstBlock))),
        tokens: await Promise.all(addresses.map((a) => contract.getFunction('balanceOf')(a) as Promise<bigint>)),
      };
    };
    const [fromGateway, fromAnvil] = await Promise.all([ask(gw), ask(node)]);
    expect(fromGateway).toEqual(fromAnvil);
    expect(fromGateway.network).toBe(31_337n);
    expect(fromGateway.head).toBe(lastBlock);
    expect(fromGateway.blocks.map((b) => b?.hash)).toEqual(gw.blocks.items.map((b) => b.hash));
    expect(fromGateway.prefetched).toHaveLength(3);
  });

  it('ethers: broadcastTransaction through the gateway is announced by both, mined, and its receipt read through the gateway', async () => {
    // Filled in through the gateway (nonce, gas, fees, chain id), signed locally, sent raw.
    const sender = (chain.wallets[7] as Wallet).connect(gw.ethers);
    const to = chain.address(8);
    // Balances at given blocks: ethers answers a repeated request from a 250 ms cache.
    const balanceBefore = await gw.ethers.getBalance(to, lastBlock);
    const request = await sender.populateTransaction({ to, value: 123_456_789n });
    const signed = await sender.signTransaction(request);
    const response = await gw.ethers.broadcastTransaction(signed);
    sent.push(response.hash as Hash);
    await sawPending([response.hash]);
    const minedIn = await chain.mine();
    // Mined once its block reached the listeners; then the receipt, read through the gateway.
    // (Not waitForTransaction: it counts on more blocks coming, and here the test mines them. It
    // reads the head, then listens for the next block: a block arriving in between is missed, and
    // ethers answers a repeated request from a 250 ms cache.)
    await sawBlock(minedIn);
    lastBlock = minedIn;
    const receipt = await gw.ethers.getTransactionReceipt(response.hash);
    expect(gw.blocks.items.at(-1)?.transactions).toEqual([response.hash]);
    expect(receipt?.status).toBe(1);
    expect(receipt?.blockNumber).toBe(minedIn);
    expect(receipt?.toJSON()).toEqual((await node.ethers.getTransactionReceipt(response.hash))?.toJSON());
    const [after, afterFromAnvil] = await Promise.all([
      gw.ethers.getBalance(to, minedIn),
      node.ethers.getBalance(to, minedIn),
    ]);
    expect(after).toBe(balanceBefore + 123_456_789n);
    expect(after).toBe(afterFromAnvil);
    expect(gw.ethersBlocks.items.at(-1)).toBe(minedIn);
  });

  it('after evm_revert and a longer branch, sends every log of the orphaned blocks again once with removed:true (viem onLogs, ethers orphan event)', async () => {
    const snapshot = await rpc<string>(anvil.httpUrl, 'evm_snapshot');
    const orphanedBlocks = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const number = await trafficRound(10 + i);
      orphanedBlocks.add(
        (await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [hex(number), false])).hash,
      );
    }
    const orphaned = gw.logs.items.filter((l) => orphanedBlocks.has(l.blockHash));
    expect(orphaned).toHaveLength(6);
    // ethers never passes a log with removed:true to the filter's listeners (the contract's
    // Transfer listener here): AbstractProvider.emit sends it to the orphan event
    // {orphan:'drop-log', log} keyed by the removed log's JSON. (`log.removedEvent()` builds that
    // key without removed, transactionIndex and _type, so a listener on it is never called.)
    for (const side of sides) {
      for (const { log } of side.ethersTransfers.items.filter((t) => orphanedBlocks.has(t.log.blockHash))) {
        const removedLog = { ...log.toJSON(), removed: true };
        await side.ethers.on({ orphan: 'drop-log', log: removedLog }, side.orphans.add);
      }
    }
    const beforeReorg = { logs: gw.logs.items.length, heads: gw.heads.items.length };

    await rpc(anvil.httpUrl, 'evm_revert', [snapshot]);
    chain.resetNonces();
    // A longer branch with other transactions: transfers to wallet 5 and ETH moves, mined at once.
    for (let i = 0; i < 4; i++) {
      await call(chain, 0, 'TestERC20', token, 'transfer', [chain.address(5), 50_000n + BigInt(i)]);
      await chain.transfer(2, chain.address(6), 10n ** 14n + BigInt(i));
      await chain.mine();
    }
    // One more block after it: whatever the reorg sends reaches every client before this block's logs.
    lastBlock = await trafficRound(20);

    // viem, through the gateway: each orphaned log again, once, with removed:true, and nothing else removed.
    const removed = gw.logs.items.filter((l) => l.removed);
    expect(byPlace(removed)).toEqual(byPlace(orphaned).map((l) => ({ ...l, removed: true })));
    expect(new Set(removed.map((l) => `${l.blockHash}:${l.logIndex}`)).size).toBe(removed.length);
    // ... before any log of the new branch.
    const afterReorg = gw.logs.items.slice(beforeReorg.logs);
    const firstNew = afterReorg.findIndex((l) => !l.removed);
    expect(afterReorg.slice(0, firstNew)).toHaveLength(removed.length);
    // The argument-filtered subscription gets the removal of what it was sent, and only that.
    expect(byPlace(gw.logsToTwo.items.filter((l) => l.removed))).toEqual(
      byPlace(removed.filter((l) => l.args.to?.toLowerCase() === chain.address(2))),
    );

    // ethers, through the gateway: one orphan event per orphaned log, the log with removed:true;
    // the contract's Transfer listener got no removed log.
    const orphanedForEthers = gw.ethersTransfers.items
      .filter((t) => orphanedBlocks.has(t.log.blockHash))
      .map((t) => ({ ...t.log.toJSON(), removed: true }));
    expect(byPlace(gw.orphans.items.map((l) => l.toJSON()))).toEqual(byPlace(orphanedForEthers));
    expect(gw.orphans.items.every((l) => l.removed)).toBe(true);
    expect(gw.ethersTransfers.items.filter((t) => t.log.removed)).toEqual([]);

    // Apart from the removals, both endpoints sent the same logs (the orphaned ones, then the new branch's).
    expect(gw.logs.items.filter((l) => !l.removed)).toEqual(node.logs.items.filter((l) => !l.removed));
    const transfers = (side: Side) => side.ethersTransfers.items.map((t) => t.log.toJSON());
    expect(transfers(gw)).toEqual(transfers(node));
    // anvil's own WebSocket (1.x) sends no removed logs on evm_revert; should it ever, they must be the gateway's.
    const anvilRemoved = node.logs.items.filter((l) => l.removed);
    if (anvilRemoved.length > 0) expect(byPlace(anvilRemoved)).toEqual(byPlace(removed));
    else expect(node.orphans.items).toEqual([]);

    // newHeads: the same headers as anvil's, the new branch right after the old one, and never a gap.
    expect(gw.heads.items).toEqual(node.heads.items.filter((h) => Number(h['number']) >= firstBlock));
    const numbers = gw.heads.items.map((h) => Number(h['number']));
    expect(numbers.every((n, i) => i === 0 || n <= (numbers[i - 1] as number) + 1)).toBe(true);
    expect(gw.heads.items.length - beforeReorg.heads).toBe(5);
    // Each side ends on anvil's canonical chain.
    const canonical = await Promise.all(
      range(firstBlock, lastBlock).map(
        async (n) => (await rpc<{ hash: string }>(anvil.httpUrl, 'eth_getBlockByNumber', [hex(n), false])).hash,
      ),
    );
    for (const side of sides) {
      const last = new Map(side.blocks.items.map((b) => [Number(b.number), b.hash]));
      expect(range(firstBlock, lastBlock).map((n) => last.get(n))).toEqual(canonical);
      expect(side.errors.items).toEqual([]);
    }
  });
});
