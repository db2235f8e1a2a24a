/**
 * Micro benchmarks of the fan-out hot path without sockets: matching and encoding one block
 * against an index of 100k watched addresses, building `blocks` messages for 10k subscribers,
 * and the encoding primitives. Prints one JSON line (`--json`) or a table.
 *
 *   node --import tsx/esm bench/micro.ts [--quick] [--json]
 */
import { blockActivity } from '../src/domain/events.ts';
import { type ChainBlock, EVENT_KINDS } from '../src/domain/types.ts';
import { DeliveryLedger } from '../src/fanout/DeliveryLedger.ts';
import { buildFrame, EncodedFields, EncodedValue, encodePrefix, pack } from '../src/fanout/encode.ts';
import { Fanout, type Peer, toBlockHeader } from '../src/fanout/Fanout.ts';
import { encodedValues, matchActivity } from '../src/fanout/matchActivity.ts';
import { SubscriptionIndex } from '../src/index/SubscriptionIndex.ts';
import { BENCH_CHAIN_ID, createBlockSource, type Workload, watchLists } from './lib/synthetic.ts';

/** One micro benchmark's result: time per operation, in µs. */
export interface MicroResult {
  readonly name: string;
  readonly what: string;
  readonly iterations: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly meanUs: number;
  /** Extra figures of the case (matches per block, frames per block, ...). */
  readonly facts?: Record<string, number>;
}

/** The activity workload of scenario S2 and of the 2 ms target (Zipf-skewed popularity). */
export const ACTIVITY_WORKLOAD: Workload = {
  channel: 'activity',
  seed: 7,
  txPerBlock: 300,
  transfersPerBlock: 300,
  universe: 1_000_000,
  zipfExponent: 0.63,
  addressesPerSubscriber: 10,
};

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Times `run` `iterations` times (bounded also by `maxMs`), after `warmup` untimed runs. */
function measure(
  name: string,
  what: string,
  iterations: number,
  maxMs: number,
  run: (i: number) => void,
  perRun = 1,
  facts?: Record<string, number>,
  prepare?: (i: number) => void,
): MicroResult {
  const warmup = Math.max(1, Math.floor(iterations / 10));
  for (let i = 0; i < warmup; i++) {
    prepare?.(i);
    run(i);
  }
  const samples: number[] = [];
  const started = performance.now();
  for (let i = 0; i < iterations && performance.now() - started < maxMs; i++) {
    prepare?.(warmup + i);
    const t0 = performance.now();
    run(warmup + i);
    samples.push(((performance.now() - t0) * 1000) / perRun);
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length);
  return {
    name,
    what,
    iterations: samples.length,
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
    meanUs: mean,
    ...(facts === undefined ? {} : { facts }),
  };
}

/** Runs every micro benchmark; `quick` runs fewer iterations. */
export function runMicro(quick: boolean): MicroResult[] {
  const results: MicroResult[] = [];
  const scale = quick ? 0.25 : 1;
  const owner = (): Peer => ({ encoding: 'msgpack' });

  // Matching + encoding a block against 100k watched addresses (10k subscriptions x 10).
  for (const [label, txPerBlock, transfersPerBlock] of [
    ['300 tx', 300, 0],
    ['300 tx + 300 transfers', 300, 300],
  ] as const) {
    const workload: Workload = { ...ACTIVITY_WORKLOAD, txPerBlock, transfersPerBlock };
    const index = new SubscriptionIndex<Peer>();
    const kinds = new Set(EVENT_KINDS);
    for (const addresses of watchLists(workload, 10_000)) {
      index.add(owner(), 's1', BENCH_CHAIN_ID, { channel: 'activity', kinds }, addresses);
    }
    const source = createBlockSource(workload);
    const blockCount = Math.max(20, Math.round(200 * scale));
    // Blocks are made one at a time, untimed, as ingest hands them over: only what fan-out keeps stays.
    let block: ChainBlock = source.block(1);
    const prepare = (i: number): void => {
      block = source.block(1 + i);
    };
    let frames = 0;
    let blocks = 0;
    let matches = 0;
    let events = 0;
    results.push(
      measure(
        `match + encode ${label}`,
        `matchActivity against ${index.watchedAddresses.toLocaleString('en-US')} watched addresses, then each matched event encoded once (MessagePack)`,
        blockCount,
        10_000,
        () => {
          const encoded = new Set<EncodedValue>();
          const values = encodedValues(block);
          for (const list of matchActivity(index, block, 0).values()) {
            matches += list.length;
            for (const i of list) {
              const value = values[i] as EncodedValue;
              if (encoded.has(value)) continue;
              encoded.add(value);
              void value.msgpack;
            }
          }
          events += encoded.size;
          blocks++;
        },
        1,
        undefined,
        (i) => prepare(100_000 + i),
      ),
    );
    const matched = results.pop() as MicroResult;
    results.push({
      ...matched,
      facts: {
        matchesPerBlock: matches / blocks,
        eventsEncodedPerBlock: events / blocks,
        watchedAddresses: index.watchedAddresses,
      },
    });
    blocks = 0;
    const fanout = new Fanout<Peer>(index, (_owner, list) => {
      frames += list.length;
    });
    results.push(
      measure(
        `publishBlock ${label}`,
        "Fanout.publishBlock: match, encode and build every subscriber's frame (no socket)",
        blockCount,
        10_000,
        () => {
          fanout.publishBlock(block, 0, new DeliveryLedger());
          blocks++;
        },
        1,
        undefined,
        prepare,
      ),
    );
    const whole = results.pop() as MicroResult;
    results.push({ ...whole, facts: { framesPerBlock: frames / blocks } });
  }

  // `blocks` messages for 10k subscribers (frames built, no socket).
  {
    const index = new SubscriptionIndex<Peer>();
    for (let i = 0; i < 10_000; i++)
      index.add(owner(), 's1', BENCH_CHAIN_ID, { channel: 'blocks', full: false, fullInput: false });
    const source = createBlockSource({
      ...ACTIVITY_WORKLOAD,
      channel: 'blocks',
      txPerBlock: 150,
      transfersPerBlock: 0,
    });
    const blocks = Array.from({ length: 50 }, (_, i) => source.block(i + 1));
    const fanout = new Fanout<Peer>(index, () => {});
    let n = 0;
    results.push(
      measure(
        'blocks fan-out, per subscriber',
        'Fanout.publishBlock to 10,000 `blocks` subscribers, per subscriber (no socket)',
        Math.round(100 * scale),
        10_000,
        () => {
          fanout.publishBlock(blocks[n++ % blocks.length] as ChainBlock, 0, new DeliveryLedger());
        },
        10_000,
      ),
    );
  }

  // Encoding primitives.
  {
    const source = createBlockSource(ACTIVITY_WORKLOAD);
    const block = source.block(1);
    const entries = blockActivity(block);
    let i = 0;
    const batch = 100;
    results.push(
      measure(
        'encode one event',
        'EncodedValue(event).msgpack: one activity event to MessagePack',
        Math.round(500 * scale),
        5000,
        () => {
          for (let k = 0; k < batch; k++) {
            void new EncodedValue((entries[i++ % entries.length] as (typeof entries)[number]).event).msgpack;
          }
        },
        batch,
      ),
    );
    const header = toBlockHeader(block);
    const fields = new EncodedFields(header);
    void fields.msgpack;
    const prefix = encodePrefix('block', 's1');
    results.push(
      measure(
        'build one block frame',
        'buildFrame: prefix + shared fields, pre-encoded',
        Math.round(500 * scale),
        5000,
        () => {
          for (let k = 0; k < batch; k++) buildFrame('msgpack', prefix, fields);
        },
        batch,
      ),
    );
    results.push(
      measure(
        'pack one block message',
        'msgpackr pack of the whole block message',
        Math.round(500 * scale),
        5000,
        () => {
          for (let k = 0; k < batch; k++) pack({ type: 'block', sub: 's1', ...header });
        },
        batch,
      ),
    );
    results.push(
      measure(
        'JSON.stringify one block message',
        'what the common approach does per client',
        Math.round(500 * scale),
        5000,
        () => {
          for (let k = 0; k < batch; k++) JSON.stringify({ type: 'block', sub: 's1', ...header });
        },
        batch,
      ),
    );
  }
  return results;
}

const isMain = process.argv[1]?.endsWith('micro.ts') ?? false;
if (isMain) {
  const results = runMicro(process.argv.includes('--quick'));
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify({ event: 'micro', results })}\n`);
  } else {
    for (const r of results) {
      console.log(
        `${r.name.padEnd(44)} p50 ${r.p50Us.toFixed(2).padStart(9)} µs  p99 ${r.p99Us.toFixed(2).padStart(9)} µs  mean ${r.meanUs.toFixed(2).padStart(9)} µs  n=${r.iterations}${r.facts ? `  ${JSON.stringify(r.facts)}` : ''}`,
      );
    }
  }
}
