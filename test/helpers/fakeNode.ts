import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';

/** A 32-byte hex hash of `text` (sha256): deterministic hashes for a synthetic chain. */
export function fakeHash(text: string): string {
  return `0x${createHash('sha256').update(text).digest('hex')}`;
}

/** Accounts the synthetic chain's transactions go between (lowercase). */
export const FAKE_ACCOUNTS: readonly string[] = Array.from({ length: 4 }, (_, i) =>
  fakeHash(`account ${i}`).slice(0, 42),
);

const ZERO_BLOOM = `0x${'0'.repeat(512)}`;
const SIGNATURE_R = fakeHash('r');
const SIGNATURE_S = fakeHash('s');

/** A transaction of the synthetic chain. */
export interface FakeTx {
  readonly hash: string;
  readonly from: string;
  readonly to: string;
  readonly value: string;
  readonly nonce: number;
}

/** A block of the synthetic chain. */
export interface FakeBlock {
  readonly number: number;
  readonly hash: string;
  readonly parentHash: string;
  readonly timestamp: number;
  readonly txs: readonly FakeTx[];
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * A synthetic chain: blocks linked by parent hash, hashes from (chain, fork, number), a few
 * transactions per block between {@link FAKE_ACCOUNTS}, a mempool that the next block takes in.
 * Blocks advance only when a test calls {@link mine}; {@link rewind} makes the node go back.
 */
export class FakeChain {
  /** What `eth_chainId` answers (a test may change it). */
  chainId: number;
  readonly txsPerBlock: number;
  /** The canonical chain, by number. */
  readonly blocks: FakeBlock[] = [];
  /** Every block ever made, forks included, by hash. */
  readonly byHash = new Map<string, FakeBlock>();
  readonly txByHash = new Map<string, { tx: FakeTx; block: FakeBlock; index: number }>();
  readonly mempool = new Map<string, FakeTx>();
  readonly #listeners = new Set<(event: { head?: FakeBlock; pending?: FakeTx }) => void>();
  readonly #nonces = new Map<string, number>();
  /** Blocks rendered as JSON (full transactions, receipts), by hash: a huge block is rendered once. */
  readonly #rendered = new Map<string, { full?: Buffer; receipts?: Buffer; header?: Buffer }>();
  #fork = 0;
  /** Timestamp of block 0: blocks are one second apart and the start height is now. */
  readonly #genesisTime: number;

  constructor(options: { chainId?: number; height?: number; txsPerBlock?: number } = {}) {
    this.chainId = options.chainId ?? 1337;
    this.txsPerBlock = options.txsPerBlock ?? 2;
    const height = options.height ?? 3;
    this.#genesisTime = Math.floor(Date.now() / 1000) - height;
    this.#append(0, `0x${'0'.repeat(64)}`, []);
    for (let i = 0; i < height; i++) this.mine();
  }

  get head(): FakeBlock {
    return this.blocks[this.blocks.length - 1] as FakeBlock;
  }

  /** Called on each new head and each new mempool transaction (the ws subscriptions). */
  listen(listener: (event: { head?: FakeBlock; pending?: FakeTx }) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #tx(from: string, to: string, value: bigint, salt: string): FakeTx {
    const nonce = this.#nonces.get(from) ?? 0;
    this.#nonces.set(from, nonce + 1);
    return {
      hash: fakeHash(`tx ${this.chainId} ${salt} ${from} ${nonce}`),
      from,
      to,
      value: `0x${value.toString(16)}`,
      nonce,
    };
  }

  #append(number: number, parentHash: string, txs: FakeTx[]): FakeBlock {
    const block: FakeBlock = {
      number,
      hash: fakeHash(`block ${this.chainId} ${this.#fork} ${number}`),
      parentHash,
      timestamp: this.#genesisTime + number,
      txs,
    };
    this.blocks[number] = block;
    this.byHash.set(block.hash, block);
    txs.forEach((tx, index) => {
      this.txByHash.set(tx.hash, { tx, block, index });
    });
    return block;
  }

  /**
   * Mines `count` blocks (the mempool goes into the first), each with `txCount` transactions more
   * (@default txsPerBlock), from each of `accounts` (indexes of {@link FAKE_ACCOUNTS}, @default all)
   * to the next.
   */
  mine(count = 1, options: { txCount?: number; accounts?: readonly number[] } = {}): FakeBlock {
    const accounts = (options.accounts ?? FAKE_ACCOUNTS.map((_, i) => i)).map((i) => FAKE_ACCOUNTS[i] as string);
    for (let i = 0; i < count; i++) {
      const parent = this.head;
      const number = parent.number + 1;
      const txs: FakeTx[] = [...this.mempool.values()];
      this.mempool.clear();
      const extra = options.txCount ?? this.txsPerBlock;
      for (let j = 0; j < extra; j++) {
        const from = accounts[j % accounts.length] as string;
        const to = accounts[(j + 1) % accounts.length] as string;
        txs.push(this.#tx(from, to, BigInt(1000 + number * 10 + j), `${this.#fork} ${number} ${j}`));
      }
      const block = this.#append(number, parent.hash, txs);
      for (const listener of this.#listeners) listener({ head: block });
    }
    return this.head;
  }

  /** The node goes back to block `number` (as after evm_revert): later blocks are made on a new fork. */
  rewind(number: number): void {
    this.blocks.length = number + 1;
    this.#fork++;
  }

  /** A transaction from account `from` to account `to` into the mempool (mined with the next block). */
  addPending(from = 0, to = 1, value = 77n): FakeTx {
    const tx = this.#tx(
      FAKE_ACCOUNTS[from] as string,
      FAKE_ACCOUNTS[to] as string,
      value,
      `pending ${this.mempool.size}`,
    );
    this.mempool.set(tx.hash, tx);
    for (const listener of this.#listeners) listener({ pending: tx });
    return tx;
  }

  txJson(tx: FakeTx, at?: { block: FakeBlock; index: number }): Record<string, unknown> {
    return {
      type: '0x2',
      chainId: hex(this.chainId),
      nonce: hex(tx.nonce),
      gas: '0x5208',
      maxFeePerGas: '0x77359400',
      maxPriorityFeePerGas: '0x3b9aca00',
      gasPrice: '0x3b9aca07',
      to: tx.to,
      value: tx.value,
      input: '0x',
      accessList: [],
      v: '0x0',
      r: SIGNATURE_R,
      s: SIGNATURE_S,
      yParity: '0x0',
      hash: tx.hash,
      blockHash: at?.block.hash ?? null,
      blockNumber: at === undefined ? null : hex(at.block.number),
      transactionIndex: at === undefined ? null : hex(at.index),
      from: tx.from,
    };
  }

  receiptJson(tx: FakeTx, block: FakeBlock, index: number): Record<string, unknown> {
    return {
      type: '0x2',
      status: '0x1',
      cumulativeGasUsed: hex(21_000 * (index + 1)),
      logs: [],
      logsBloom: ZERO_BLOOM,
      transactionHash: tx.hash,
      transactionIndex: hex(index),
      blockHash: block.hash,
      blockNumber: hex(block.number),
      gasUsed: '0x5208',
      effectiveGasPrice: '0x3b9aca07',
      from: tx.from,
      to: tx.to,
      contractAddress: null,
    };
  }

  /** A block as `eth_getBlockBy*` answers it, as an object. */
  blockJson(block: FakeBlock, full: boolean): Record<string, unknown> {
    return {
      number: hex(block.number),
      hash: block.hash,
      parentHash: block.parentHash,
      nonce: '0x0000000000000000',
      sha3Uncles: fakeHash('uncles'),
      logsBloom: ZERO_BLOOM,
      transactionsRoot: fakeHash(`txs ${block.hash}`),
      stateRoot: fakeHash(`state ${block.hash}`),
      receiptsRoot: fakeHash(`receipts ${block.hash}`),
      miner: FAKE_ACCOUNTS[3],
      difficulty: '0x0',
      totalDifficulty: '0x0',
      extraData: '0x',
      size: '0x3e8',
      gasLimit: '0x1c9c380',
      gasUsed: hex(21_000 * block.txs.length),
      timestamp: hex(block.timestamp),
      baseFeePerGas: '0x7',
      mixHash: fakeHash('mix'),
      uncles: [],
      transactions: full
        ? block.txs.map((tx, index) => this.txJson(tx, { block, index }))
        : block.txs.map((tx) => tx.hash),
    };
  }

  #cached(block: FakeBlock): { full?: Buffer; receipts?: Buffer; header?: Buffer } {
    let cached = this.#rendered.get(block.hash);
    if (cached === undefined) {
      cached = {};
      this.#rendered.set(block.hash, cached);
    }
    return cached;
  }

  /** A block with full transactions as JSON (rendered once per block: a huge one costs its size once). */
  fullBlockBytes(block: FakeBlock): Buffer {
    const cached = this.#cached(block);
    cached.full ??= Buffer.from(JSON.stringify(this.blockJson(block, true)));
    return cached.full;
  }

  /** A block with its transaction hashes only, as JSON (rendered once per block). */
  headerBytes(block: FakeBlock): Buffer {
    const cached = this.#cached(block);
    cached.header ??= Buffer.from(JSON.stringify(this.blockJson(block, false)));
    return cached.header;
  }

  /** A block's receipts as JSON (rendered once per block). */
  receiptsBytes(block: FakeBlock): Buffer {
    const cached = this.#cached(block);
    cached.receipts ??= Buffer.from(JSON.stringify(block.txs.map((tx, index) => this.receiptJson(tx, block, index))));
    return cached.receipts;
  }
}

/** How a fault changes one answer. */
export type FaultKind =
  /** Answer after `ms` (or never, if the test ends first). */
  | { readonly kind: 'delay'; readonly ms: number }
  /** An HTTP error status with no JSON-RPC body (ws: the connection is dropped). */
  | { readonly kind: 'status'; readonly status: number }
  /** A body that is not JSON. */
  | { readonly kind: 'invalidJson' }
  /** A JSON-RPC envelope that is not one (a wrong id). */
  | { readonly kind: 'badEnvelope' }
  /** A JSON-RPC error object. */
  | { readonly kind: 'error'; readonly code: number; readonly message: string }
  /** The correct answer padded with whitespace to `bytes`. */
  | { readonly kind: 'oversize'; readonly bytes: number }
  /** The result changed by `mutate` (it gets a copy it may change). */
  | { readonly kind: 'mutate'; readonly mutate: (result: unknown, params: readonly unknown[]) => unknown }
  /** The connection dropped without an answer. */
  | { readonly kind: 'hangUp' };

/** A fault injected into the answers of one method (or all), once or until cleared. */
export interface Injection {
  /** The method whose answers are hit; all methods when absent. */
  readonly method?: string;
  /** Only requests whose params match. */
  readonly match?: (params: readonly unknown[]) => boolean;
  /** How many answers are hit. @default 1 (Infinity: until {@link FakeNode.clear}) */
  readonly times?: number;
  readonly fault: FaultKind;
}

interface Request {
  readonly id: unknown;
  readonly method: string;
  readonly params: readonly unknown[];
}

/** A request the node received. */
export interface ReceivedRequest {
  readonly method: string;
  readonly params: readonly unknown[];
}

/** An answer: the body (JSON-RPC or not), or a fault the transport acts out. */
type Answer =
  | { readonly body: string }
  /** A body in parts (a pre-rendered result between its envelope's halves), written as they are. */
  | { readonly parts: readonly Buffer[] }
  | { readonly status: number }
  | { readonly hangUp: true };

/** What a method gives: a result, a JSON-RPC error, or a result already rendered as JSON. */
type Outcome = { result: unknown } | { error: { code: number; message: string } } | { bytes: Buffer };

const methodNotFound = { code: -32601, message: 'Method not found' };

/**
 * A JSON-RPC node for tests, over http and ws on one loopback port, serving a {@link FakeChain}:
 * eth_chainId, eth_blockNumber, eth_getBlockByNumber / ByHash, eth_getBlockReceipts,
 * eth_getTransactionReceipt, eth_getTransactionByHash, eth_subscribe (newHeads,
 * newPendingTransactions) and pending-transaction filters. Faults are injected per method
 * ({@link inject}); calls are counted per method.
 */
export class FakeNode {
  readonly chain: FakeChain;
  readonly port: number;
  readonly #server: Server;
  readonly #wss: WebSocketServer;
  readonly #injections: Array<{ injection: Injection; left: number }> = [];
  /** Every request received, in order. */
  readonly requests: ReceivedRequest[] = [];
  readonly #callWaiters = new Set<() => void>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #sockets = new Set<Socket>();
  readonly #filters = new Map<string, string[]>();
  readonly #unlisten: () => void;
  /** Options that change what the node answers. */
  readonly options: {
    /** Whether eth_getBlockReceipts exists. */
    blockReceipts: boolean;
    /** While set, every other `latest` (and eth_blockNumber) answer is this many blocks below the head. */
    flapBlocks: number | undefined;
    /** While set, what eth_chainId answers (the node claims another chain; its blocks stay the same). */
    chainId: number | undefined;
    /** Whether the `safe` and `finalized` tags exist (the head); without them they answer null, as before the merge. */
    finalityTags: boolean;
  } = { blockReceipts: true, flapBlocks: undefined, chainId: undefined, finalityTags: true };
  #flapTurn = false;
  #nextFilter = 0;

  private constructor(chain: FakeChain, server: Server, wss: WebSocketServer, port: number) {
    this.chain = chain;
    this.#server = server;
    this.#wss = wss;
    this.port = port;
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    server.on('request', (req, res) => this.#onHttp(req, res));
    wss.on('connection', (ws) => this.#onSocket(ws));
    this.#unlisten = chain.listen((event) => this.#notify(event));
  }

  /** Starts a node serving `chain` on a free loopback port. */
  static async start(chain: FakeChain): Promise<FakeNode> {
    const server = createServer();
    const wss = new WebSocketServer({ server });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new FakeNode(chain, server, wss, (server.address() as AddressInfo).port);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** The `endpoint` label the gateway gives this node. */
  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** How many requests of `method` (whose params match, if given) the node received. */
  calls(method: string, match?: (params: readonly unknown[]) => boolean): number {
    let n = 0;
    for (const r of this.requests) if (r.method === method && (match === undefined || match(r.params))) n++;
    return n;
  }

  /** Resolves once `method` (whose params match, if given) was received `count` times in all (bounded). */
  waitForCalls(
    method: string,
    count: number,
    options: { match?: (params: readonly unknown[]) => boolean; timeoutMs?: number } = {},
  ): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const calls = (): number => this.calls(method, options.match);
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (calls() < count) return;
        clearTimeout(timer);
        this.#callWaiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#callWaiters.delete(check);
        reject(new Error(`${method} received ${calls()} times, not ${count}, within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#callWaiters.add(check);
      check();
    });
  }

  /** Injects a fault; it hits the next `times` matching requests. */
  inject(injection: Injection): void {
    this.#injections.push({ injection, left: injection.times ?? 1 });
  }

  /** Removes every injected fault, stops flapping and answers the chain's own id again. */
  clear(): void {
    this.#injections.length = 0;
    this.options.flapBlocks = undefined;
    this.options.chainId = undefined;
  }

  /** Sends `text` as it is to every ws client (not JSON, notifications of unknown ids, ...). */
  broadcast(text: string): void {
    for (const ws of this.#wss.clients) ws.send(text);
  }

  /** Drops every connection (http and ws); the node keeps listening. */
  dropConnections(): void {
    for (const ws of this.#wss.clients) ws.terminate();
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.#unlisten();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #record(request: Request): void {
    this.requests.push({ method: request.method, params: request.params });
    for (const check of [...this.#callWaiters]) check();
  }

  #takeFault(request: Request): FaultKind | undefined {
    const index = this.#injections.findIndex(
      ({ injection, left }) =>
        left > 0 &&
        (injection.method === undefined || injection.method === request.method) &&
        (injection.match === undefined || injection.match(request.params)),
    );
    const hit = this.#injections[index];
    if (hit === undefined) return undefined;
    hit.left--;
    if (hit.left <= 0) this.#injections.splice(index, 1);
    return hit.injection.fault;
  }

  #later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, ms);
    this.#timers.add(timer);
  }

  /** The answer to one request, with any injected fault applied. */
  #answer(request: Request, ws: WebSocket | undefined, done: (answer: Answer) => void): void {
    this.#record(request);
    const fault = this.#takeFault(request);
    const envelope = (result: unknown): string => JSON.stringify({ jsonrpc: '2.0', id: request.id, result });
    let outcome: Outcome;
    try {
      outcome = this.#dispatch(request, ws);
    } catch (error) {
      outcome = { error: { code: -32602, message: String(error) } };
    }
    const prefix = `{"jsonrpc":"2.0","id":${JSON.stringify(request.id)},"result":`;
    const body = (): string => {
      if ('bytes' in outcome) return `${prefix}${outcome.bytes.toString()}}`;
      if ('error' in outcome) return JSON.stringify({ jsonrpc: '2.0', id: request.id, error: outcome.error });
      return envelope(outcome.result);
    };
    if (fault === undefined) {
      done('bytes' in outcome ? { parts: [Buffer.from(prefix), outcome.bytes, Buffer.from('}')] } : { body: body() });
      return;
    }
    switch (fault.kind) {
      case 'delay':
        this.#later(fault.ms, () => done({ body: body() }));
        return;
      case 'status':
        done({ status: fault.status });
        return;
      case 'invalidJson':
        done({ body: '<html>502 Bad Gateway</html>' });
        return;
      case 'badEnvelope':
        done({ body: JSON.stringify({ jsonrpc: '2.0', id: 'not-the-id', result: null }) });
        return;
      case 'error':
        done({
          body: JSON.stringify({ jsonrpc: '2.0', id: request.id, error: { code: fault.code, message: fault.message } }),
        });
        return;
      case 'oversize': {
        const text = body();
        done({ body: text + ' '.repeat(Math.max(0, fault.bytes - text.length)) });
        return;
      }
      case 'mutate': {
        const parsed = JSON.parse(body()) as { result?: unknown };
        done({ body: envelope(fault.mutate(parsed.result, request.params)) });
        return;
      }
      case 'hangUp':
        done({ hangUp: true });
        return;
    }
  }

  #head(): FakeBlock {
    const flap = this.options.flapBlocks;
    if (flap === undefined) return this.chain.head;
    this.#flapTurn = !this.#flapTurn;
    return this.#flapTurn
      ? (this.chain.blocks[Math.max(0, this.chain.head.number - flap)] as FakeBlock)
      : this.chain.head;
  }

  #block(tag: unknown): FakeBlock | undefined {
    if ((tag === 'safe' || tag === 'finalized') && !this.options.finalityTags) return undefined;
    if (tag === 'latest' || tag === 'pending' || tag === 'safe' || tag === 'finalized') return this.#head();
    if (tag === 'earliest') return this.chain.blocks[0];
    if (typeof tag === 'string' && /^0x[0-9a-f]{64}$/.test(tag)) {
      const block = this.chain.byHash.get(tag);
      return block !== undefined && this.chain.blocks[block.number] === block ? block : undefined;
    }
    if (typeof tag === 'string' && /^0x[0-9a-f]+$/.test(tag))
      return this.chain.blocks[Number.parseInt(tag.slice(2), 16)];
    return undefined;
  }

  #dispatch(request: Request, ws: WebSocket | undefined): Outcome {
    const { chain } = this;
    const [first, second] = request.params;
    switch (request.method) {
      case 'eth_chainId':
        return { result: hex(this.options.chainId ?? chain.chainId) };
      case 'eth_blockNumber':
        return { result: hex(this.#head().number) };
      case 'eth_getBlockByNumber':
      case 'eth_getBlockByHash': {
        const block = request.method === 'eth_getBlockByHash' ? chain.byHash.get(String(first)) : this.#block(first);
        if (block === undefined) return { result: null };
        return { bytes: second === true ? chain.fullBlockBytes(block) : chain.headerBytes(block) };
      }
      case 'eth_getBlockReceipts': {
        if (!this.options.blockReceipts) return { error: methodNotFound };
        const block = this.#block(first);
        return block === undefined ? { result: null } : { bytes: chain.receiptsBytes(block) };
      }
      case 'eth_getTransactionReceipt': {
        const found = chain.txByHash.get(String(first));
        if (found === undefined || chain.blocks[found.block.number] !== found.block) return { result: null };
        return { result: chain.receiptJson(found.tx, found.block, found.index) };
      }
      case 'eth_getTransactionByHash': {
        const pending = chain.mempool.get(String(first));
        if (pending !== undefined) return { result: chain.txJson(pending) };
        const found = chain.txByHash.get(String(first));
        return { result: found === undefined ? null : chain.txJson(found.tx, found) };
      }
      case 'eth_newPendingTransactionFilter': {
        const id = hex(++this.#nextFilter);
        this.#filters.set(id, []);
        return { result: id };
      }
      case 'eth_getFilterChanges': {
        const queue = this.#filters.get(String(first));
        if (queue === undefined) return { error: { code: -32000, message: 'filter not found' } };
        return { result: queue.splice(0) };
      }
      case 'eth_uninstallFilter':
        return { result: this.#filters.delete(String(first)) };
      case 'eth_subscribe': {
        if (ws === undefined) return { error: { code: -32601, message: 'subscriptions need a socket' } };
        const kind = first === 'newHeads' ? 'newHeads' : first === 'newPendingTransactions' ? 'pending' : undefined;
        if (kind === undefined) return { error: { code: -32602, message: `unknown subscription ${String(first)}` } };
        const id = fakeHash(`sub ${Math.random()}`).slice(0, 34);
        subscriptionsOf(ws).set(id, { kind, full: second === true });
        return { result: id };
      }
      case 'eth_unsubscribe':
        return { result: ws === undefined ? false : subscriptionsOf(ws).delete(String(first)) };
      default:
        return { error: methodNotFound };
    }
  }

  #notify(event: { head?: FakeBlock; pending?: FakeTx }): void {
    if (event.pending !== undefined) {
      for (const queue of this.#filters.values()) queue.push(event.pending.hash);
    }
    for (const ws of this.#wss.clients) {
      for (const [id, sub] of subscriptionsOf(ws)) {
        let result: unknown;
        if (sub.kind === 'newHeads' && event.head !== undefined) result = this.chain.blockJson(event.head, false);
        else if (sub.kind === 'pending' && event.pending !== undefined) {
          result = sub.full ? this.chain.txJson(event.pending) : event.pending.hash;
        } else continue;
        ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'eth_subscription', params: { subscription: id, result } }));
      }
    }
  }

  #onHttp(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let request: Request;
      try {
        request = JSON.parse(Buffer.concat(chunks).toString()) as Request;
      } catch {
        res.writeHead(400).end();
        return;
      }
      this.#answer(request, undefined, (answer) => {
        if (res.destroyed || res.writableEnded) return;
        if ('hangUp' in answer) {
          req.socket.destroy();
          return;
        }
        if ('status' in answer) {
          res.writeHead(answer.status, { 'content-type': 'text/plain' }).end('upstream failed');
          return;
        }
        if ('parts' in answer) {
          const length = answer.parts.reduce((sum, part) => sum + part.length, 0);
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
          for (const part of answer.parts) res.write(part);
          res.end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(answer.body);
      });
    });
  }

  #onSocket(ws: WebSocket): void {
    ws.on('error', () => ws.terminate());
    ws.on('message', (data: Buffer) => {
      let request: Request;
      try {
        request = JSON.parse(data.toString()) as Request;
      } catch {
        return;
      }
      this.#answer(request, ws, (answer) => {
        if (ws.readyState !== ws.OPEN) return;
        if ('hangUp' in answer || 'status' in answer) {
          ws.terminate();
          return;
        }
        if ('parts' in answer) ws.send(Buffer.concat(answer.parts), { binary: false });
        else ws.send(answer.body);
      });
    });
  }
}

const socketSubscriptions = new WeakMap<WebSocket, Map<string, { kind: 'newHeads' | 'pending'; full: boolean }>>();

function subscriptionsOf(ws: WebSocket): Map<string, { kind: 'newHeads' | 'pending'; full: boolean }> {
  let subs = socketSubscriptions.get(ws);
  if (subs === undefined) {
    subs = new Map();
    socketSubscriptions.set(ws, subs);
  }
  return subs;
}
