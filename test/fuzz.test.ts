import { describe, expect, it } from 'vitest';
import { type FuzzSessionFigures, runFuzzSession } from './helpers/fuzzSession.ts';

/** Replay a failure with its seed: FUZZ_SEED=<seed> npx vitest run test/fuzz.test.ts */
const SEED = Number(process.env['FUZZ_SEED'] ?? 20_250_610);
const FRAMES = 250_000;
const MIN_FRAMES = 100_000;
const MAX_SECONDS = 45;

describe('fuzzing the gateway with hostile frames', () => {
  it(
    `answers ${FRAMES.toLocaleString('en-US')} generated frames while another client misses nothing (seed ${SEED})`,
    async () => {
      const figures: FuzzSessionFigures = await runFuzzSession({ frames: FRAMES, seed: SEED, maxSeconds: MAX_SECONDS });
      const { fuzzer, observer, rss } = figures;
      const summary = JSON.stringify({ ...figures, fuzzer: { ...fuzzer, framesByKind: undefined } });
      console.info(`fuzz figures: ${summary}`);

      expect(figures.gatewayAlive, summary).toBe(true);
      expect(fuzzer.framesSent, summary).toBeGreaterThanOrEqual(MIN_FRAMES);
      expect(figures.fuzzerErrors, summary).toBe('');
      // Every close is one the protocol documents for what that connection sent.
      expect(fuzzer.unexpectedCloses, summary).toEqual([]);
      expect(fuzzer.pingTimeouts, summary).toBe(0);
      expect(fuzzer.replies['error:BAD_REQUEST'] ?? 0, summary).toBeGreaterThan(fuzzer.framesSent / 4);
      expect(fuzzer.replies['error:RATE_LIMITED'] ?? 0, summary).toBe(0);
      for (const code of ['1008', '1009', '1006']) expect(fuzzer.closes[code] ?? 0, summary).toBeGreaterThan(0);

      // The observer got every block, in order, and its pings stayed fast.
      expect(observer.closed, summary).toBe(false);
      expect(observer.missing, summary).toBe(0);
      expect(observer.duplicates, summary).toBe(0);
      expect(observer.blocksReceived, summary).toBeGreaterThanOrEqual(3);
      expect(observer.lastReceived, summary).toBeGreaterThanOrEqual(observer.chainHead - 1);
      expect(observer.pingsLost, summary).toBe(0);
      expect(observer.pingP99Ms, summary).toBeLessThan(100);

      expect(rss.peakMB - rss.warmMB, summary).toBeLessThan(50);
      // No label value came from client input: the transport and index series are those of before.
      expect(figures.seriesAdded, summary).toEqual([]);
      expect(figures.seriesRemoved, summary).toEqual([]);
    },
    (MAX_SECONDS + 75) * 1000,
  );
});
