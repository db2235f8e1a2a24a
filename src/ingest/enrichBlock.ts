import { errorMessage, RpcFaultError } from '../domain/errors.ts';
import type { ChainBlock, ChainTx, Hex, InternalTransferEvent, TokenTransferEvent } from '../domain/types.ts';
import { isMethodUnsupported } from './Capabilities.ts';
import { type TokenInfo, type TokenLookupOutcome, TokenMetadata } from './TokenMetadata.ts';
import {
  fetchInternalTransfers,
  mayHaveInternalTransfers,
  probeTraceMethod,
  type SendRpc,
  type TraceMethod,
} from './traceInternal.ts';

/** Options of {@link createBlockEnricher}. */
export interface BlockEnricherOptions {
  /** Sends one request to the chain's node (the watcher's pool: its faults fail the round over); `probe`'s default. */
  readonly send: SendRpc;
  /**
   * {@link send} for requests the node may refuse: its error answers (a method it lacks, a token
   * call that reverts, a block it does not trace) reject but are not reported as its faults.
   * Every request of the enricher goes through it (traces, token metadata). @default send
   */
  readonly probe?: SendRpc;
  /** Ask the node for call traces (internal transfers) where it serves them. @default true */
  readonly traces?: boolean;
  /** Read token metadata (symbol, decimals, name). @default true */
  readonly tokenMetadata?: boolean;
  /** Tokens whose metadata is kept in memory. @default 10000 */
  readonly maxTokens?: number;
  /** One block's traces fetched: the method, how long it took in seconds, whether it was used. */
  readonly onTrace?: (method: TraceMethod, seconds: number, ok: boolean) => void;
  /** What was done about a block's traces (where the node serves them). */
  readonly onTraced?: (outcome: 'traced' | 'skipped' | 'refused') => void;
  /** A token's metadata was looked up. */
  readonly onTokenLookup?: (seconds: number, outcome: TokenLookupOutcome) => void;
  /** A block whose traces the node refused (not a fault of the link): it goes on without internal transfers. */
  readonly onTraceRefused?: (block: number, error: RpcFaultError) => void;
}

/** What ingest adds to a block before it goes to the log: internal transfers, token names. */
export interface BlockEnricher {
  /**
   * The block with its transactions' internal transfers (where it may have some and the node
   * serves traces) and its token transfers' metadata (where known now). A fault of the node's
   * link rejects (the round fails over and the block is fetched again); a node that refuses to
   * trace this block (an error answer) leaves it without internal transfers, said by `onTraceRefused`.
   */
  readonly enrich: (block: ChainBlock) => Promise<ChainBlock>;
  /** Whether the node serves traces (`undefined` until asked). */
  readonly tracing: () => boolean | undefined;
  /** Resolves once no token lookup is in flight or waiting. */
  readonly idle: () => Promise<void>;
  readonly close: () => void;
}

/**
 * What ingest asks beyond blocks and receipts. Traces: the method is found out on the first
 * block that needs one (`debug_traceBlockByNumber` with the callTracer or `trace_block`, whichever answered the probe faster), and
 * only blocks in which some transaction ran code are traced (see `mayHaveInternalTransfers`:
 * ingest cannot know which addresses gateways watch, and any address may be paid through a
 * contract). Token metadata: looked up in the background the first time a token is seen, so the
 * block that shows it first may go without it; later blocks carry it.
 */
export function createBlockEnricher(options: BlockEnricherOptions): BlockEnricher {
  // A revert or a refused trace is the node's answer about the request, never a fault of the node.
  const request = options.probe ?? options.send;
  const metadata =
    options.tokenMetadata === false
      ? undefined
      : new TokenMetadata({
          send: request,
          ...(options.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
          ...(options.onTokenLookup === undefined ? {} : { onLookup: options.onTokenLookup }),
        });
  /** The node's trace method: `undefined` until found out, `null` for none. */
  let method: TraceMethod | null | undefined = options.traces === false ? null : undefined;

  async function traceMethod(blockNumber: number): Promise<TraceMethod | null> {
    if (method === undefined) method = (await probeTraceMethod(request, blockNumber)) ?? null;
    return method;
  }

  async function internalTransfers(block: ChainBlock): Promise<Map<Hex, InternalTransferEvent[]> | undefined> {
    if (method === null) return undefined;
    if (!mayHaveInternalTransfers(block)) {
      // Nothing to trace; the chain's traces are still found out once, for `welcome`.
      if ((await traceMethod(block.number)) === null) return undefined;
      options.onTraced?.('skipped');
      return new Map();
    }
    const using = await traceMethod(block.number);
    if (using === null) return undefined;
    const started = performance.now();
    try {
      const found = await fetchInternalTransfers(
        request,
        using,
        block.number,
        block.transactions.map((tx) => tx.hash),
      );
      options.onTrace?.(using, (performance.now() - started) / 1000, true);
      options.onTraced?.('traced');
      return found;
    } catch (error) {
      options.onTrace?.(using, (performance.now() - started) / 1000, false);
      if (isMethodUnsupported(error)) {
        // The endpoint in use (after a failover, perhaps) does not trace: the round fails over
        // (another endpoint may trace this block), and the method is found out again there.
        method = undefined;
        throw error;
      }
      if (error instanceof RpcFaultError && error.fault === 'node_error') {
        options.onTraced?.('refused');
        options.onTraceRefused?.(block.number, error);
        return undefined;
      }
      throw error;
    }
  }

  function withMetadata(transfer: TokenTransferEvent): TokenTransferEvent {
    const info: TokenInfo | undefined = metadata?.get(transfer.token);
    if (info === undefined || (info.symbol === undefined && info.decimals === undefined && info.name === undefined)) {
      return transfer;
    }
    return { ...transfer, ...info };
  }

  async function enrich(block: ChainBlock): Promise<ChainBlock> {
    const internal = await internalTransfers(block);
    const traced = internal !== undefined;
    if (!traced && metadata === undefined) return block;
    const transactions = block.transactions.map((tx): ChainTx => {
      const own = internal?.get(tx.hash);
      const transfers = metadata === undefined ? tx.transfers : tx.transfers?.map(withMetadata);
      if ((own === undefined || own.length === 0) && transfers === tx.transfers) return tx;
      const out: { -readonly [K in keyof ChainTx]: ChainTx[K] } = { ...tx };
      if (transfers !== undefined) out.transfers = transfers;
      if (own !== undefined && own.length > 0) out.internal = own;
      return out;
    });
    return { ...block, transactions, ...(traced ? { traced: true } : {}) };
  }

  return {
    enrich: async (block) => {
      try {
        return await enrich(block);
      } catch (error) {
        if (error instanceof RpcFaultError) throw error;
        throw new RpcFaultError('malformed', `traces of block ${block.number}: ${errorMessage(error)}`, {
          cause: error,
        });
      }
    },
    tracing: () => (method === undefined ? undefined : method !== null),
    idle: async () => metadata?.idle(),
    close: () => metadata?.close(),
  };
}
