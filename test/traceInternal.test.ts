import { getCreate2Address, getCreateAddress, keccak256 } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import type { Hex, InternalTransferEvent } from '../src/domain/types.ts';
import { createRpcClient, type RpcClient } from '../src/ingest/createRpcClient.ts';
import { type RpcBlock, type RpcReceipt, toChainBlock } from '../src/ingest/toChainBlock.ts';
import {
  fetchInternalTransfers,
  type InternalCallType,
  mayHaveInternalTransfers,
  probeTraceMethod,
} from '../src/ingest/traceInternal.ts';
import { TestChain } from './helpers/chain.ts';
import { artifact, type ContractName, deploy, deployedAddress } from './helpers/contracts.ts';

// Internal ETH transfers as a real node traces them: anvil serves both debug_traceBlockByNumber
// (callTracer) and trace_block (Parity style), and both must give the same events. Anvil mines
// only on evm_mine, so each block holds exactly the transactions a test sent.

const SENDER = 0;
const DEPLOYER = 9;
const FINNEY = 10n ** 15n;
const SALT = `0x${'5a'.repeat(32)}`;

function hex(n: bigint): Hex {
  return `0x${n.toString(16)}`;
}

describe('internal transfers traced on anvil', () => {
  let anvil: Anvil;
  let chain: TestChain;
  let client: RpcClient;
  let splitter: Hex;
  let inner: Hex;
  let doomed: Hex;
  let rejector: Hex;
  let alice: Hex;
  let bob: Hex;
  let carol: Hex;
  const doomedBalance = 40n * FINNEY;

  const send = (method: string, params: readonly unknown[]): Promise<unknown> => client.request(method, params);

  /** Sends `method(args)` to a contract with `value` wei from the sender; returns the hash. */
  async function transact(name: ContractName, to: string, method: string, args: unknown[], value = 0n): Promise<Hex> {
    const data = artifact(name).iface.encodeFunctionData(method, args);
    return (await chain.send(SENDER, { to, data, value })) as Hex;
  }

  /** The block's transaction hashes, in block order. */
  async function txHashesOf(blockNumber: number): Promise<Hex[]> {
    return (await chain.block(blockNumber)).transactions.map((tx) => tx.hash as Hex);
  }

  /** The block's internal transfers by both methods, which must agree. */
  async function traced(blockNumber: number): Promise<Map<Hex, InternalTransferEvent[]>> {
    const txHashes = await txHashesOf(blockNumber);
    const byCallTracer = await fetchInternalTransfers(send, 'debug_traceBlockByNumber', blockNumber, txHashes);
    const byParity = await fetchInternalTransfers(send, 'trace_block', blockNumber, txHashes);
    expect(byParity).toEqual(byCallTracer);
    return byCallTracer;
  }

  /** The block as ingest hands it on: the node's block joined with its receipts. */
  async function chainBlock(blockNumber: number) {
    const blockHex = hex(BigInt(blockNumber));
    const block = (await client.request('eth_getBlockByNumber', [blockHex, true])) as RpcBlock;
    const receipts = (await client.request('eth_getBlockReceipts', [blockHex])) as RpcReceipt[];
    return toChainBlock(31_337, block, receipts);
  }

  function transfer(
    txHash: Hex,
    path: string,
    from: Hex,
    to: Hex,
    wei: bigint,
    callType: InternalCallType = 'call',
  ): InternalTransferEvent {
    return { kind: 'internal', id: `${txHash}:call:${path}`, txHash, from, to, value: hex(wei), callType };
  }

  beforeAll(async () => {
    artifact('Splitter'); // compile before the clock of any test starts
    anvil = await startAnvil({ noMining: true });
    chain = new TestChain(anvil.httpUrl);
    client = createRpcClient(anvil.httpUrl);
    [alice, bob, carol] = [chain.address(1) as Hex, chain.address(2) as Hex, chain.address(3) as Hex];
    const names: ContractName[] = ['Splitter', 'Splitter', 'Splitter', 'Rejector'];
    const deployments: string[] = [];
    for (const name of names) deployments.push(await deploy(chain, DEPLOYER, name));
    await chain.mine();
    const addresses = await Promise.all(deployments.map((hash) => deployedAddress(chain, hash) as Promise<Hex>));
    [splitter, inner, doomed, rejector] = addresses as [Hex, Hex, Hex, Hex];
    await chain.transfer(DEPLOYER, doomed, doomedBalance);
    await chain.mine();
  });

  afterAll(async () => {
    client?.close();
    chain?.close();
    await anvil?.close();
  });

  describe('a block of contract calls', () => {
    let blockNumber: number;
    const tx: Record<string, Hex> = {};
    let events: Map<Hex, InternalTransferEvent[]>;

    beforeAll(async () => {
      tx['split'] = await transact(
        'Splitter',
        splitter,
        'split',
        [
          [alice, bob, rejector],
          [1n * FINNEY, 2n * FINNEY, 3n * FINNEY],
        ],
        6n * FINNEY,
      );
      tx['nested'] = await transact('Splitter', splitter, 'splitVia', [inner, [alice], [5n * FINNEY]], 5n * FINNEY);
      tx['delegated'] = await transact(
        'Splitter',
        splitter,
        'splitByDelegate',
        [inner, [bob], [9n * FINNEY]],
        9n * FINNEY,
      );
      tx['spawn'] = await transact('Splitter', splitter, 'spawn', [SALT, 7n * FINNEY, 8n * FINNEY], 15n * FINNEY);
      tx['destroy'] = await transact('Splitter', doomed, 'destroy', [carol]);
      tx['reverted'] = await transact('Splitter', splitter, 'splitThenRevert', [[alice], [4n * FINNEY]], 4n * FINNEY);
      tx['rejected'] = (await chain.send(SENDER, { to: rejector, value: FINNEY })) as Hex;
      blockNumber = await chain.mine();
      expect(await txHashesOf(blockNumber)).toEqual(Object.values(tx));
      events = await traced(blockNumber);
    });

    it('lists each amount a split forwards, and none for the recipient whose frame failed', async () => {
      const receipt = await chain.receipt(tx['split'] as Hex);
      expect(receipt.status).toBe(1); // the failed leg did not revert the transaction
      expect(events.get(tx['split'] as Hex)).toEqual([
        transfer(tx['split'] as Hex, '0', splitter, alice, 1n * FINNEY),
        transfer(tx['split'] as Hex, '1', splitter, bob, 2n * FINNEY),
      ]);
    });

    it('lists transfers two frames deep with their paths', () => {
      const hash = tx['nested'] as Hex;
      expect(events.get(hash)).toEqual([
        transfer(hash, '0', splitter, inner, 5n * FINNEY),
        transfer(hash, '0.0', inner, alice, 5n * FINNEY),
      ]);
    });

    it('lists a call made by delegated code as paid by the delegating contract, not the delegate call', () => {
      const hash = tx['delegated'] as Hex;
      expect(events.get(hash)).toEqual([transfer(hash, '0.0', splitter, bob, 9n * FINNEY)]);
    });

    it('lists a CREATE and a CREATE2 with value, paid to the created contracts', async () => {
      const hash = tx['spawn'] as Hex;
      // The splitter's first creation (a contract's nonce starts at 1), then CREATE2 of the child's init code.
      const childInitCode = artifact('SplitterChild').bytecode;
      const created = getCreateAddress({ from: splitter, nonce: 1 }).toLowerCase() as Hex;
      const created2 = getCreate2Address(splitter, SALT, keccak256(childInitCode)).toLowerCase() as Hex;
      expect(events.get(hash)).toEqual([
        transfer(hash, '0', splitter, created, 7n * FINNEY, 'create'),
        transfer(hash, '1', splitter, created2, 8n * FINNEY, 'create2'),
      ]);
      const atBlock = hex(BigInt(blockNumber));
      expect(await client.request('eth_getBalance', [created, atBlock])).toBe(hex(7n * FINNEY));
      expect(await client.request('eth_getBalance', [created2, atBlock])).toBe(hex(8n * FINNEY));
    });

    it('lists a SELFDESTRUCT as the contract paying its balance to the beneficiary', () => {
      const hash = tx['destroy'] as Hex;
      expect(events.get(hash)).toEqual([transfer(hash, '0', doomed, carol, doomedBalance, 'selfdestruct')]);
    });

    it('lists nothing for a transaction that reverted, whatever it moved before', async () => {
      expect((await chain.receipt(tx['reverted'] as Hex)).status).toBe(0);
      expect((await chain.receipt(tx['rejected'] as Hex)).status).toBe(0);
      expect(events.get(tx['reverted'] as Hex)).toEqual([]);
      expect(events.get(tx['rejected'] as Hex)).toEqual([]);
    });

    it('is worth tracing', async () => {
      expect(mayHaveInternalTransfers(await chainBlock(blockNumber))).toBe(true);
    });
  });

  it('is not worth tracing a block of plain transfers, which indeed moves nothing internally', async () => {
    const hashes = [
      await chain.transfer(4, alice, FINNEY),
      await chain.transfer(5, bob, 2n * FINNEY),
      await chain.transfer(6, carol, 3n * FINNEY),
    ];
    const blockNumber = await chain.mine();
    const block = await chainBlock(blockNumber);
    expect(block.transactions.map((t) => t.hash).sort()).toEqual(hashes.map((h) => h.toLowerCase()).sort());
    expect(mayHaveInternalTransfers(block)).toBe(false);
    const events = await traced(blockNumber);
    expect([...events.values()]).toEqual([[], [], []]);
  });

  it('probes a method anvil serves (it serves both: the one that answered faster)', async () => {
    expect(['debug_traceBlockByNumber', 'trace_block']).toContain(
      await probeTraceMethod(send, Number(await client.request('eth_blockNumber', []))),
    );
  });

  it('says the node is behind for a block it does not have, by either method', async () => {
    const next = Number(await client.request('eth_blockNumber', [])) + 1;
    const fakeTx = `0x${'77'.repeat(32)}` as Hex;
    await expect(fetchInternalTransfers(send, 'trace_block', next, [fakeTx])).rejects.toMatchObject({
      fault: 'behind',
    });
    await expect(fetchInternalTransfers(send, 'debug_traceBlockByNumber', next, [fakeTx])).rejects.toMatchObject({
      fault: 'node_error',
    });
  });
});
