import { createHash, type KeyObject, timingSafeEqual } from 'node:crypto';
import { type JWTPayload, errors as joseErrors, jwtVerify } from 'jose';
import { toAddress } from '../domain/address.ts';
import type { Hex } from '../domain/types.ts';
import { type OriginPattern, originAllowed } from './matchOrigin.ts';

/** A channel of protocol v1. */
export type Channel = 'blocks' | 'activity';

/** Per-connection quotas of a key (reported in `welcome.limits`), and its connections in all. */
export interface KeyLimits {
  /** Open connections of the key over all clients (for tokens: per subject); 0 for no limit. */
  readonly maxConnections: number;
  readonly maxSubscriptions: number;
  readonly maxAddresses: number;
  readonly maxRequestsPerSecond: number;
}

/** What a key (or the holder of a token) may do. Absent restrictions allow everything. */
export interface AccessProfile {
  /** The key's name: its label in metrics (`token` for tokens), never client input. */
  readonly name: string;
  readonly origins: readonly OriginPattern[];
  readonly chains?: ReadonlySet<number>;
  readonly channels?: ReadonlySet<Channel>;
  readonly addresses?: ReadonlySet<Hex>;
  readonly limits: KeyLimits;
}

/** An API key as configured: the SHA-256 of its text, never the text itself. */
export interface ApiKey extends AccessProfile {
  readonly sha256: Buffer;
}

/** How tokens (JWT) are checked; every token is signed with this one key and algorithm. */
export interface TokenConfig {
  /** A shared secret (HS256), or a public key whose type fixes the algorithm (RS256, ES256, EdDSA). */
  readonly key: Uint8Array | KeyObject;
  readonly algorithm: 'HS256' | 'RS256' | 'ES256' | 'EdDSA';
  readonly issuer?: string;
  readonly audience?: string;
  /** What a token allows before its own claims narrow it. */
  readonly profile: AccessProfile;
}

/** What a connection was admitted with; it changes only by an in-band token refresh. */
export interface Grant {
  readonly profile: AccessProfile;
  /** What its connections count against (`maxConnections`): the key, or the token's subject. */
  readonly quotaKey: string;
  readonly chains?: ReadonlySet<number>;
  readonly channels?: ReadonlySet<Channel>;
  readonly addresses?: ReadonlySet<Hex>;
  /** The token's `sub`, when a token admitted it. */
  readonly subject?: string;
  /** The token's `exp` in ms since the epoch: the connection's deadline. */
  readonly expiresAtMs?: number;
}

/** Why an upgrade was refused (label `reason` of `blockcast_auth_refusals_total`). */
export const AUTH_REFUSALS = ['missing', 'bad_key', 'bad_token', 'expired_token', 'origin'] as const;
export type AuthRefusal = (typeof AUTH_REFUSALS)[number];

/** The outcome of {@link Auth.admit}. */
export type Admission =
  | { readonly ok: true; readonly grant: Grant | undefined }
  | {
      readonly ok: false;
      readonly status: 401 | 403;
      readonly reason: AuthRefusal;
      readonly message: string;
      /** The key or token profile, when the credential was valid but its origin was not. */
      readonly profile?: string;
    };

/** The outcome of {@link Auth.refresh}. */
export type Refresh =
  | { readonly ok: true; readonly grant: Grant }
  | { readonly ok: false; readonly code: 'UNAUTHORIZED' | 'FORBIDDEN' | 'BAD_REQUEST'; readonly message: string };

/** Decides who may open a socket, and with what (PROTOCOL.md, Authentication). */
export interface Auth {
  /** Whether a credential is needed at all (keys or tokens are configured). */
  readonly required: boolean;
  /** Names of every configured profile (metric labels known at start). */
  readonly profiles: readonly string[];
  /**
   * Admits or refuses an upgrade from its credential (empty when none was given) and its
   * `Origin` header (empty when none). A key is decided at once; a token asynchronously.
   */
  readonly admit: (credential: string, origin: string) => Admission | Promise<Admission>;
  /** Replaces a token connection's grant by a newer token's, for the same key profile and subject. */
  readonly refresh: (grant: Grant, token: string) => Promise<Refresh>;
}

/** Options of {@link createAuth}. */
export interface AuthOptions {
  readonly keys: readonly ApiKey[];
  readonly tokens?: TokenConfig;
  /** Origins allowed for every connection (empty: any). */
  readonly origins: readonly OriginPattern[];
}

/** Longest credential looked at, in characters; a longer one is refused unread. */
export const MAX_CREDENTIAL_LENGTH = 8192;
/** Addresses a token may name at most. */
export const MAX_TOKEN_ADDRESSES = 100_000;
/** Clock difference tolerated on `exp` and `nbf`, in seconds. */
const CLOCK_TOLERANCE_SEC = 5;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The SHA-256 of a key's text, as kept in the configuration. */
export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** The algorithm a public key pins (RS256, ES256 or EdDSA); `undefined` for any other key type. */
export function algorithmOf(key: KeyObject): TokenConfig['algorithm'] | undefined {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}

/**
 * Builds the gateway's gatekeeper. Keys are found by the SHA-256 of what the client presents:
 * a lookup by digest says nothing about a key's text, and the digest found is compared again in
 * constant time.
 */
export function createAuth(options: AuthOptions): Auth {
  const byDigest = new Map<string, ApiKey>();
  for (const key of options.keys) byDigest.set(key.sha256.toString('hex'), key);
  const tokens = options.tokens;
  const required = options.keys.length > 0 || tokens !== undefined;

  const refuse = (status: 401 | 403, reason: AuthRefusal, message: string, profile?: string): Admission => ({
    ok: false,
    status,
    reason,
    message,
    ...(profile === undefined ? {} : { profile }),
  });

  const checkOrigin = (origin: string, profile: AccessProfile): Admission | undefined =>
    originAllowed(origin, profile.origins)
      ? undefined
      : refuse(403, 'origin', `origin ${origin.slice(0, 200)} may not use this key`, profile.name);

  const verify = async (
    token: string,
  ): Promise<{ ok: true; grant: Grant } | { ok: false; expired: boolean; message: string }> => {
    if (tokens === undefined) return { ok: false, expired: false, message: 'tokens are not accepted here' };
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, tokens.key, {
        algorithms: [tokens.algorithm],
        requiredClaims: ['exp'],
        clockTolerance: CLOCK_TOLERANCE_SEC,
        ...(tokens.issuer === undefined ? {} : { issuer: tokens.issuer }),
        ...(tokens.audience === undefined ? {} : { audience: tokens.audience }),
      }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) return { ok: false, expired: true, message: 'the token has expired' };
      const why = error instanceof joseErrors.JOSEError ? error.code : 'ERR_INVALID';
      return { ok: false, expired: false, message: `the token is not valid (${why})` };
    }
    const claims = narrow(payload, tokens.profile);
    if (typeof claims === 'string') return { ok: false, expired: false, message: `the token is not valid: ${claims}` };
    const subject = typeof payload.sub === 'string' ? payload.sub.slice(0, 200) : undefined;
    return {
      ok: true,
      grant: {
        profile: tokens.profile,
        quotaKey: subject === undefined ? 'token' : `token:${subject}`,
        ...claims,
        ...(subject === undefined ? {} : { subject }),
        expiresAtMs: (payload.exp as number) * 1000,
      },
    };
  };

  const admitToken = async (token: string, origin: string): Promise<Admission> => {
    const verified = await verify(token);
    if (!verified.ok) return refuse(401, verified.expired ? 'expired_token' : 'bad_token', verified.message);
    return checkOrigin(origin, verified.grant.profile) ?? { ok: true, grant: verified.grant };
  };

  return {
    required,
    profiles: [...options.keys.map((k) => k.name), ...(tokens === undefined ? [] : [tokens.profile.name])],
    admit: (credential, origin) => {
      if (!originAllowed(origin, options.origins)) {
        return refuse(403, 'origin', `origin ${origin.slice(0, 200)} is not allowed`);
      }
      if (!required) return { ok: true, grant: undefined };
      if (credential === '') {
        return refuse(401, 'missing', 'an API key or token is needed: ?key=KEY, or Authorization: Bearer KEY');
      }
      if (credential.length > MAX_CREDENTIAL_LENGTH) return refuse(401, 'bad_key', 'the credential is too long');
      if (tokens !== undefined && JWT_SHAPE.test(credential)) return admitToken(credential, origin);
      const digest = hashKey(credential);
      const key = byDigest.get(digest.toString('hex'));
      if (key === undefined || !timingSafeEqual(digest, key.sha256)) return refuse(401, 'bad_key', 'unknown API key');
      return (
        checkOrigin(origin, key) ?? {
          ok: true,
          grant: {
            profile: key,
            quotaKey: `key:${key.name}`,
            ...(key.chains === undefined ? {} : { chains: key.chains }),
            ...(key.channels === undefined ? {} : { channels: key.channels }),
            ...(key.addresses === undefined ? {} : { addresses: key.addresses }),
          },
        }
      );
    },
    refresh: async (grant, token) => {
      if (grant.expiresAtMs === undefined) {
        return {
          ok: false,
          code: 'BAD_REQUEST',
          message: 'this connection was opened with an API key: nothing to refresh',
        };
      }
      if (typeof token !== 'string' || token.length > MAX_CREDENTIAL_LENGTH || !JWT_SHAPE.test(token)) {
        return { ok: false, code: 'BAD_REQUEST', message: 'token: must be a JWT' };
      }
      const verified = await verify(token);
      if (!verified.ok) return { ok: false, code: 'UNAUTHORIZED', message: verified.message };
      if (verified.grant.subject !== grant.subject) {
        return { ok: false, code: 'FORBIDDEN', message: 'the new token is for another subject' };
      }
      return { ok: true, grant: verified.grant };
    },
  };
}

/**
 * A token's own restrictions (`addresses`, `chains`, `channels` claims) within its profile's;
 * a message when a claim is malformed.
 */
function narrow(
  payload: JWTPayload,
  profile: AccessProfile,
): { chains?: ReadonlySet<number>; channels?: ReadonlySet<Channel>; addresses?: ReadonlySet<Hex> } | string {
  const out: { chains?: ReadonlySet<number>; channels?: ReadonlySet<Channel>; addresses?: ReadonlySet<Hex> } = {};
  const { addresses, chains, channels } = payload as Record<string, unknown>;
  if (addresses !== undefined) {
    if (!Array.isArray(addresses) || addresses.length > MAX_TOKEN_ADDRESSES) {
      return `addresses: must be a list of at most ${MAX_TOKEN_ADDRESSES} addresses`;
    }
    const set = new Set<Hex>();
    for (const raw of addresses) {
      const address = toAddress(raw);
      if (address === undefined) return `addresses: not an address: ${JSON.stringify(raw).slice(0, 60)}`;
      if (profile.addresses === undefined || profile.addresses.has(address)) set.add(address);
    }
    out.addresses = set;
  } else if (profile.addresses !== undefined) {
    out.addresses = profile.addresses;
  }
  if (chains !== undefined) {
    if (!Array.isArray(chains) || chains.length > 1000 || !chains.every((c) => Number.isSafeInteger(c) && c > 0)) {
      return 'chains: must be a list of chain ids';
    }
    out.chains = new Set((chains as number[]).filter((c) => profile.chains === undefined || profile.chains.has(c)));
  } else if (profile.chains !== undefined) {
    out.chains = profile.chains;
  }
  if (channels !== undefined) {
    if (!Array.isArray(channels) || !channels.every((c) => c === 'blocks' || c === 'activity')) {
      return 'channels: must be a list of "blocks" and "activity"';
    }
    out.channels = new Set(
      (channels as Channel[]).filter((c) => profile.channels === undefined || profile.channels.has(c)),
    );
  } else if (profile.channels !== undefined) {
    out.channels = profile.channels;
  }
  return out;
}
