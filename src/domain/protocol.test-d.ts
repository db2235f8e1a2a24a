import { describe, expectTypeOf, it } from 'vitest';
import type * as Sdk from '../../packages/client/src/index.ts';
import { EVENT_KINDS as SDK_EVENT_KINDS } from '../../packages/client/src/index.ts';
import type * as Protocol from '../../packages/client/src/protocol.ts';
import { type BlockHeaderFields, toBlockHeader } from '../fanout/Fanout.ts';
import type { PROTOCOL_ERROR_CODES, ProtocolErrorCode } from './errors.ts';
import type { ActivityEvent, ChainTx, EVENT_KINDS, EventKind, TokenTransferEvent, TxEvent } from './types.ts';

// Checked by `npm test` (vitest typecheck) and `tsc --noEmit`: the gateway's lists and types and
// the SDK's protocol module (packages/client/src/protocol.ts) are the same, or this file fails.

describe('the wire types of the gateway and the SDK', () => {
  it('lists every protocol error code, and only those', () => {
    expectTypeOf<(typeof PROTOCOL_ERROR_CODES)[number]>().toEqualTypeOf<Protocol.ProtocolErrorCode>();
    expectTypeOf<ProtocolErrorCode>().toEqualTypeOf<Protocol.ProtocolErrorCode>();
    // The SDK's own error codes include every code the gateway can send.
    expectTypeOf<ProtocolErrorCode>().toExtend<Sdk.ClientErrorCode>();
  });

  it('lists every event kind, and only those', () => {
    expectTypeOf<(typeof EVENT_KINDS)[number]>().toEqualTypeOf<Protocol.EventKind>();
    expectTypeOf<EventKind>().toEqualTypeOf<Protocol.EventKind>();
    expectTypeOf(SDK_EVENT_KINDS).toEqualTypeOf<readonly Protocol.EventKind[]>();
    expectTypeOf<ActivityEvent['kind']>().toEqualTypeOf<Protocol.EventKind>();
  });

  it('sends the events the SDK reads, field for field', () => {
    expectTypeOf<TxEvent>().toEqualTypeOf<Protocol.TxEvent>();
    expectTypeOf<TokenTransferEvent>().toEqualTypeOf<Protocol.TokenTransferEvent>();
    expectTypeOf<ActivityEvent>().toEqualTypeOf<Protocol.ActivityEvent>();
    expectTypeOf<ActivityEvent>().toEqualTypeOf<Sdk.ActivityEvent>();
    expectTypeOf<Protocol.ErrorMessage['code']>().toEqualTypeOf<ProtocolErrorCode>();
  });

  it('builds block messages of the protocol shape', () => {
    expectTypeOf(toBlockHeader).returns.toEqualTypeOf<BlockHeaderFields>();
    expectTypeOf<BlockHeaderFields & { type: 'block'; sub: string }>().toExtend<Protocol.BlockMessage>();
    // A block's transaction carries every field of the protocol's, under its own name.
    expectTypeOf<ChainTx['hash']>().toEqualTypeOf<Protocol.BlockTransaction['txHash']>();
    expectTypeOf<ChainTx['index']>().toExtend<Protocol.BlockTransaction['txIndex']>();
  });
});
