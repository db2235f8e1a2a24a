import { afterEach, describe, expect, it } from 'vitest';
import { FakeChain, FakeNode } from '../../test/helpers/fakeNode.ts';
import { RpcFaultError } from '../domain/errors.ts';
import { isMethodUnsupported } from './Capabilities.ts';
import { RpcPool } from './RpcPool.ts';

// The pool against a real JSON-RPC node over http (test/helpers/fakeNode.ts): what it reports as
// the node's faults, and what it leaves to the caller.

const CALL = [{ to: `0x${'70c'.padStart(40, '0')}`, data: '0x95d89b41' }, 'latest'] as const;

describe('RpcPool', () => {
  const closers: Array<() => Promise<void> | void> = [];

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function node(): Promise<FakeNode> {
    const started = await FakeNode.start(new FakeChain());
    closers.push(() => started.close());
    return started;
  }

  /** A pool of `urls` that records its faults and the endpoints it marks. */
  function pool(urls: readonly string[]) {
    const faults: Array<{ fault: string; url: string }> = [];
    const endpoints: Array<[string, boolean]> = [];
    const requests: Array<[string, boolean]> = [];
    const made = new RpcPool({
      urls,
      requestTimeoutMs: 500,
      onFault: (fault, url) => faults.push({ fault: fault.fault, url }),
      onEndpoint: (url, up) => endpoints.push([url, up]),
      onRequest: (method, _url, _seconds, ok) => requests.push([method, ok]),
    });
    closers.push(() => made.close());
    return { pool: made, faults, endpoints, requests };
  }

  /** What `request` rejects with (it must reject). */
  async function rejection(request: Promise<unknown>): Promise<RpcFaultError> {
    const settled = await request.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(settled).toBeInstanceOf(RpcFaultError);
    return settled as RpcFaultError;
  }

  it('rejects with an error answer through probe, but neither reports it nor marks the endpoint down', async () => {
    const a = await node();
    const b = await node();
    const { pool: rpc, faults, endpoints, requests } = pool([a.url, b.url]);
    a.inject({ method: 'eth_call', fault: { kind: 'error', code: 3, message: 'execution reverted' } });
    a.inject({
      method: 'debug_traceBlockByNumber',
      fault: { kind: 'error', code: -32000, message: 'execution timeout' },
    });

    const reverted = await rejection(rpc.probe('eth_call', CALL));
    expect(reverted).toMatchObject({ fault: 'node_error', rpcCode: 3, rpcMessage: 'execution reverted' });
    const refused = await rejection(rpc.probe('debug_traceBlockByNumber', ['0x1', { tracer: 'callTracer' }]));
    expect(refused).toMatchObject({ fault: 'node_error', rpcCode: -32000 });
    expect(isMethodUnsupported(refused)).toBe(false);
    // A method the node lacks is still told apart by the caller (probeTraceMethod, the tags).
    const lacking = await rejection(rpc.probe('trace_block', ['0x1']));
    expect(isMethodUnsupported(lacking)).toBe(true);

    expect(faults).toEqual([]);
    expect(endpoints).toEqual([[a.url, true]]);
    expect(requests).toEqual([
      ['eth_call', false],
      ['debug_traceBlockByNumber', false],
      ['trace_block', false],
    ]);
    expect(rpc.currentUrl()).toBe(a.url);
    expect(b.requests).toEqual([]);
    // The same endpoint answers the next request.
    expect(await rpc.probe('eth_chainId', [])).toBe('0x539');
  });

  it.each([
    ['an unreadable answer', { kind: 'invalidJson' } as const, 'invalid_json'],
    ['an HTTP error without a JSON-RPC body', { kind: 'status', status: 502 } as const, 'http_status'],
    ['a closed connection', { kind: 'hangUp' } as const, 'transport'],
    ['no answer in time', { kind: 'delay', ms: 2_000 } as const, 'timeout'],
    ['an answer of another id', { kind: 'badEnvelope' } as const, 'bad_response'],
  ])('reports %s through probe as a fault of the node', async (_, fault, reason) => {
    const a = await node();
    const { pool: rpc, faults, endpoints } = pool([a.url]);
    a.inject({ method: 'eth_call', fault });
    expect(await rejection(rpc.probe('eth_call', CALL))).toMatchObject({ fault: reason });
    expect(faults).toEqual([{ fault: reason, url: a.url }]);
    expect(endpoints).toEqual([[a.url, false]]);
  });

  it('reports an error answer through send as a fault of the node', async () => {
    const a = await node();
    const { pool: rpc, faults, endpoints } = pool([a.url]);
    a.inject({ method: 'eth_call', fault: { kind: 'error', code: -32005, message: 'limit exceeded' } });
    expect(await rejection(rpc.send('eth_call', CALL))).toMatchObject({ fault: 'node_error', rpcCode: -32005 });
    expect(faults).toEqual([{ fault: 'node_error', url: a.url }]);
    expect(endpoints).toEqual([[a.url, false]]);
  });
});
