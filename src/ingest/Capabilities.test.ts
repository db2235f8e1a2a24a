import { describe, expect, it } from 'vitest';
import { GatewayError, RpcFaultError } from '../domain/errors.ts';
import { Capabilities, isMethodUnsupported } from './Capabilities.ts';

const nodeError = (code: number, message: string): RpcFaultError =>
  new RpcFaultError('node_error', `x: ${message}`, { method: 'x', rpcCode: code, rpcMessage: message });

describe('isMethodUnsupported', () => {
  it.each([
    ['-32601', nodeError(-32601, 'Method not found')],
    [
      'a message that the method does not exist',
      nodeError(-32000, 'the method eth_getBlockReceipts does not exist/is not available'),
    ],
    ['a message that the method is not supported', nodeError(-32000, 'method eth_subscribe not supported')],
    ['unsupported method', nodeError(-32004, 'Unsupported method: eth_getBlockReceipts')],
    ['not supported', nodeError(-32000, 'notifications not supported')],
  ])('is true for a node error with %s', (_, error) => {
    expect(isMethodUnsupported(error)).toBe(true);
  });

  it.each([
    ['a node error about something else', nodeError(-32000, 'filter not found')],
    ['invalid params', nodeError(-32602, 'invalid params')],
    ['a timeout', new RpcFaultError('timeout', 'eth_getBlockReceipts: no whole answer within 10000 ms')],
    ['a closed client', new RpcFaultError('transport', 'eth_getBlockReceipts: the client was closed')],
    ['invalid JSON', new RpcFaultError('invalid_json', 'response body is not valid JSON (method not found)')],
    ['an HTTP error', new RpcFaultError('http_status', 'HTTP 404 Method Not Found')],
    ['ethers’ UNSUPPORTED_OPERATION', new GatewayError('RPC_FAILED', 'provider destroyed; unsupported operation')],
    ['anything else', new Error('method not supported')],
  ])('is false for %s', (_, error) => {
    expect(isMethodUnsupported(error)).toBe(false);
  });
});

describe('Capabilities', () => {
  it('switches a capability off for one endpoint only, and asks again after retryMs', () => {
    let now = 0;
    const capabilities = new Capabilities(600_000, () => now);
    expect(capabilities.has('a', 'blockReceipts')).toBe(true);
    capabilities.switchOff('a', 'blockReceipts');
    expect(capabilities.has('a', 'blockReceipts')).toBe(false);
    expect(capabilities.has('b', 'blockReceipts')).toBe(true);
    expect(capabilities.has('a', 'mempool')).toBe(true);
    now = 599_999;
    expect(capabilities.has('a', 'blockReceipts')).toBe(false);
    expect(capabilities.retryInMs('a', 'blockReceipts')).toBe(1);
    now = 600_000;
    expect(capabilities.has('a', 'blockReceipts')).toBe(true);
    expect(capabilities.retryInMs('a', 'blockReceipts')).toBe(0);
  });

  it('keeps it off for retryMs again when the endpoint still lacks it', () => {
    let now = 0;
    const capabilities = new Capabilities(1000, () => now);
    capabilities.switchOff('a', 'mempool');
    now = 1000;
    expect(capabilities.has('a', 'mempool')).toBe(true);
    capabilities.switchOff('a', 'mempool');
    now = 1999;
    expect(capabilities.has('a', 'mempool')).toBe(false);
  });
});
