import { JsonRpcProvider, type TransactionReceipt, type TransactionRequest, type Wallet } from 'ethers';
import { devWallets } from '../../src/devnet/startTraffic.ts';

/** Raw JSON-RPC call to a loopback node. */
export async function rpc<T>(url: string, method: string, params: unknown[] = []): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json()) as { result?: T; error?: { message: string } };
  if (body.error !== undefined) throw new Error(`${method}: ${body.error.message}`);
  return body.result as T;
}

/** A block as the node returns it (the fields tests compare). */
export interface NodeBlock {
  number: string;
  hash: string;
  parentHash: string;
  transactions: Array<{ hash: string; from: string; to: string | null; value: string; input: string; nonce: string }>;
}

/** Test access to an anvil node: dev wallets, mining on demand, blocks and receipts. */
export class TestChain {
  readonly url: string;
  readonly provider: JsonRpcProvider;
  readonly wallets: Wallet[];
  readonly #nonces = new Map<number, number>();

  constructor(url: string) {
    this.url = url;
    this.provider = new JsonRpcProvider(url, undefined, { staticNetwork: true, batchMaxCount: 1 });
    this.wallets = devWallets(this.provider, 10);
  }

  /** Sends `wei` from dev wallet `from` to `to` (not mined until {@link mine} without automine). */
  async transfer(from: number, to: string, wei: bigint): Promise<string> {
    const wallet = this.wallets[from] as Wallet;
    // Nonces are counted here: without automine the node's pending count lags the pool.
    // Read the count raw: ethers' provider answers a repeated request from a short-lived cache.
    const nonce =
      this.#nonces.get(from) ??
      Number(await rpc<string>(this.url, 'eth_getTransactionCount', [wallet.address, 'latest']));
    this.#nonces.set(from, nonce + 1);
    const tx = await wallet.sendTransaction({ to, value: wei, nonce });
    return tx.hash;
  }

  /** Sends a transaction (a call, a deployment) from dev wallet `from`; returns its hash. */
  async send(from: number, request: TransactionRequest): Promise<string> {
    const wallet = this.wallets[from] as Wallet;
    const nonce =
      this.#nonces.get(from) ??
      Number(await rpc<string>(this.url, 'eth_getTransactionCount', [wallet.address, 'latest']));
    this.#nonces.set(from, nonce + 1);
    // A fixed gas limit: estimating against the latest block fails for calls that depend on
    // transactions still in the pool (a transfer of tokens minted earlier in the same block).
    const tx = await wallet.sendTransaction({ gasLimit: 3_000_000n, ...request, nonce });
    return tx.hash;
  }

  /** Forgets the locally counted nonces (after a reorg or revert changed the node's). */
  resetNonces(): void {
    this.#nonces.clear();
  }

  /** Mines one block and returns its number. */
  async mine(): Promise<number> {
    await rpc(this.url, 'evm_mine');
    return Number(await rpc<string>(this.url, 'eth_blockNumber'));
  }

  async block(number: number): Promise<NodeBlock> {
    return rpc<NodeBlock>(this.url, 'eth_getBlockByNumber', [`0x${number.toString(16)}`, true]);
  }

  async receipt(hash: string): Promise<TransactionReceipt> {
    const receipt = await this.provider.getTransactionReceipt(hash);
    if (receipt === null) throw new Error(`no receipt for ${hash}`);
    return receipt;
  }

  address(i: number): string {
    return (this.wallets[i] as Wallet).address.toLowerCase();
  }

  close(): void {
    this.provider.destroy();
  }
}
