import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { toAddress } from '../domain/address.ts';
import { GatewayError } from '../domain/errors.ts';
import type { Hex } from '../domain/types.ts';
import {
  type AccessProfile,
  type ApiKey,
  type AuthOptions,
  algorithmOf,
  type Channel,
  hashKey,
  type KeyLimits,
  type TokenConfig,
} from './createAuth.ts';
import { type OriginPattern, parseOriginPattern } from './matchOrigin.ts';

/** What {@link loadAuth} reads: the auth part of the configuration, and the limits a key has unless it sets its own. */
export interface AuthSettings {
  /** SHA-256 digests (hex) of API keys given by flag or environment (the keys themselves are not kept). */
  readonly apiKeyHashes: readonly string[];
  /** JSON file of API keys with their origins, chains, channels, addresses and quotas ('' for none). */
  readonly keysFile: string;
  /** Origins of web pages allowed to open sockets (empty: any). */
  readonly allowedOrigins: readonly string[];
  /** Secret of HS256 tokens (JWT) ('' for none). */
  readonly jwtSecret: string;
  /** PEM file of the public key of RS256, ES256 or EdDSA tokens ('' for none). */
  readonly jwtPublicKey: string;
  /** `iss` every token must carry ('' for any). */
  readonly jwtIssuer: string;
  /** `aud` every token must carry ('' for any). */
  readonly jwtAudience: string;
  /** Watched addresses per connection. */
  readonly maxAddresses: number;
  /** Subscriptions per connection. */
  readonly maxSubscriptions: number;
  /** Client messages per second per connection. */
  readonly maxRequestsPerSecond: number;
}

/** The bounds of a key's quotas: those of the flags of the same name. */
const LIMIT_RANGES: Readonly<Record<keyof KeyLimits, readonly [number, number]>> = {
  maxConnections: [0, 10_000_000],
  maxSubscriptions: [1, 10_000],
  maxAddresses: [1, 1_000_000],
  maxRequestsPerSecond: [1, 100_000],
};
const PROFILE_FIELDS = ['origins', 'chains', 'channels', 'addresses', 'limits'] as const;
const KEY_FIELDS = ['name', 'sha256', 'key', ...PROFILE_FIELDS] as const;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** Names that label other things in metrics. */
const RESERVED_NAMES = new Set(['token', 'none']);
/** Shortest key text accepted: anything shorter can be guessed. */
export const MIN_KEY_LENGTH = 16;
/** Shortest HS256 secret accepted, in bytes (RFC 7518: at least the hash's size). */
const MIN_SECRET_BYTES = 32;
/** Largest keys file read, in bytes. */
const MAX_KEYS_FILE_BYTES = 64 * 1024 * 1024;

/**
 * Reads and checks everything auth is configured with: keys from the flags and the keys file,
 * the token key, the origins. Every mistake is a `BAD_CONFIG` error naming the setting (and the
 * file and the entry).
 */
export function loadAuth(settings: AuthSettings): AuthOptions {
  const defaults: KeyLimits = {
    maxConnections: 0,
    maxSubscriptions: settings.maxSubscriptions,
    maxAddresses: settings.maxAddresses,
    maxRequestsPerSecond: settings.maxRequestsPerSecond,
  };
  const origins = settings.allowedOrigins.map((raw) => originPattern(raw, 'allowedOrigins'));
  const keys: ApiKey[] = settings.apiKeyHashes.map((hex) => ({
    name: `key-${hex.slice(0, 8)}`,
    sha256: Buffer.from(hex, 'hex'),
    origins: [],
    limits: defaults,
  }));
  // Where each key of `keys` was given, for the errors about duplicates.
  const sources = settings.apiKeyHashes.map((_, i) => `apiKeys[${i}]`);
  let tokenProfile: AccessProfile = { name: 'token', origins: [], limits: defaults };
  let tokenProfileGiven = false;
  if (settings.keysFile !== '') {
    const file = readKeysFile(settings.keysFile);
    const where = (path: string): string => `keysFile: ${settings.keysFile}: ${path}`;
    if (!isObject(file)) throw new GatewayError('BAD_CONFIG', where('must hold a JSON object with "keys"'));
    const unknown = Object.keys(file).filter((k) => k !== 'keys' && k !== 'tokens');
    if (unknown.length > 0) {
      throw new GatewayError('BAD_CONFIG', where(`${unknown[0]}: unknown setting (known: keys, tokens)`));
    }
    const list = file['keys'] ?? [];
    if (!Array.isArray(list)) throw new GatewayError('BAD_CONFIG', where('keys: must be a list'));
    list.forEach((entry: unknown, i: number) => {
      keys.push(apiKey(entry, defaults, (path) => where(`keys[${i}]${path}`)));
      sources.push(where(`keys[${i}]`));
    });
    if (file['tokens'] !== undefined) {
      tokenProfile = profile('token', file['tokens'], defaults, PROFILE_FIELDS, (path) => where(`tokens${path}`));
      tokenProfileGiven = true;
    }
    const hasTokenKey = settings.jwtSecret !== '' || settings.jwtPublicKey !== '';
    if (list.length === 0 && settings.apiKeyHashes.length === 0 && !hasTokenKey) {
      // An empty file would leave the gateway open to anyone on every interface.
      throw new GatewayError('BAD_CONFIG', where('keys: holds no key (and no tokens are configured)'));
    }
  }
  const names = new Set<string>();
  const digests = new Set<string>();
  keys.forEach((key, i) => {
    const at = sources[i] as string;
    if (names.has(key.name)) throw new GatewayError('BAD_CONFIG', `${at}.name: the name ${key.name} is given twice`);
    const hex = key.sha256.toString('hex');
    if (digests.has(hex)) throw new GatewayError('BAD_CONFIG', `${at}: key ${key.name} is given twice`);
    names.add(key.name);
    digests.add(hex);
  });
  const tokens = tokenConfig(settings, tokenProfile, tokenProfileGiven);
  return { keys, origins, ...(tokens === undefined ? {} : { tokens }) };
}

function readKeysFile(path: string): unknown {
  let text: string;
  try {
    const bytes = readFileSync(path);
    if (bytes.length > MAX_KEYS_FILE_BYTES) throw new Error(`larger than ${MAX_KEYS_FILE_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (error) {
    throw new GatewayError('BAD_CONFIG', `keysFile: cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new GatewayError('BAD_CONFIG', `keysFile: ${path} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

function tokenConfig(
  settings: AuthSettings,
  tokenProfile: AccessProfile,
  tokenProfileGiven: boolean,
): TokenConfig | undefined {
  if (settings.jwtSecret !== '' && settings.jwtPublicKey !== '') {
    throw new GatewayError('BAD_CONFIG', 'jwtSecret: give either a secret or a public key for tokens, not both');
  }
  const claims = {
    ...(settings.jwtIssuer === '' ? {} : { issuer: settings.jwtIssuer }),
    ...(settings.jwtAudience === '' ? {} : { audience: settings.jwtAudience }),
    profile: tokenProfile,
  };
  if (settings.jwtSecret !== '') {
    const key = new TextEncoder().encode(settings.jwtSecret);
    if (key.length < MIN_SECRET_BYTES) {
      throw new GatewayError(
        'BAD_CONFIG',
        `jwtSecret: must have at least ${MIN_SECRET_BYTES} bytes, got ${key.length}`,
      );
    }
    return { key, algorithm: 'HS256', ...claims };
  }
  if (settings.jwtPublicKey !== '') {
    let key: KeyObject;
    try {
      key = createPublicKey(readFileSync(settings.jwtPublicKey, 'utf8'));
    } catch (error) {
      throw new GatewayError(
        'BAD_CONFIG',
        `jwtPublicKey: ${settings.jwtPublicKey} is not a readable PEM public key: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const algorithm = algorithmOf(key);
    if (algorithm === undefined) {
      throw new GatewayError(
        'BAD_CONFIG',
        `jwtPublicKey: ${settings.jwtPublicKey} must be an RSA, P-256 or Ed25519 key, got ${key.asymmetricKeyType}`,
      );
    }
    return { key, algorithm, ...claims };
  }
  if (settings.jwtIssuer !== '' || settings.jwtAudience !== '') {
    const setting = settings.jwtIssuer !== '' ? 'jwtIssuer' : 'jwtAudience';
    throw new GatewayError('BAD_CONFIG', `${setting}: needs --jwt-secret or --jwt-public-key`);
  }
  if (tokenProfileGiven) {
    // A "tokens" entry without a token key would silently admit nothing.
    throw new GatewayError(
      'BAD_CONFIG',
      `keysFile: ${settings.keysFile}: tokens: needs --jwt-secret or --jwt-public-key`,
    );
  }
  return undefined;
}

function apiKey(entry: unknown, defaults: KeyLimits, where: (path: string) => string): ApiKey {
  if (!isObject(entry)) throw new GatewayError('BAD_CONFIG', where(': must be an object'));
  const name = entry['name'];
  if (typeof name !== 'string' || !NAME.test(name) || RESERVED_NAMES.has(name)) {
    throw new GatewayError(
      'BAD_CONFIG',
      where('.name: must be 1 to 63 letters, digits, _ . - (not "token" or "none"), the label of its metrics'),
    );
  }
  const sha = entry['sha256'];
  const text = entry['key'];
  let sha256: Buffer;
  if (sha !== undefined && text === undefined) {
    if (typeof sha !== 'string' || !/^[0-9a-fA-F]{64}$/.test(sha)) {
      throw new GatewayError('BAD_CONFIG', where('.sha256: must be the SHA-256 of the key, 64 hex digits'));
    }
    sha256 = Buffer.from(sha, 'hex');
  } else if (text !== undefined && sha === undefined) {
    if (typeof text !== 'string' || text.length < MIN_KEY_LENGTH) {
      throw new GatewayError('BAD_CONFIG', where(`.key: must be a string of at least ${MIN_KEY_LENGTH} characters`));
    }
    sha256 = hashKey(text);
  } else {
    throw new GatewayError('BAD_CONFIG', where('.sha256: give the key as "sha256" (its digest) or "key", one of them'));
  }
  return { ...profile(name, entry, defaults, KEY_FIELDS, where), sha256 };
}

function profile(
  name: string,
  entry: unknown,
  defaults: KeyLimits,
  fields: readonly string[],
  where: (path: string) => string,
): AccessProfile {
  if (!isObject(entry)) throw new GatewayError('BAD_CONFIG', where(': must be an object'));
  const unknown = Object.keys(entry).find((k) => !fields.includes(k));
  if (unknown !== undefined) {
    throw new GatewayError('BAD_CONFIG', where(`.${unknown}: unknown setting (known: ${fields.join(', ')})`));
  }
  const list = (field: string): unknown[] | undefined => {
    const value = entry[field];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length === 0) {
      throw new GatewayError('BAD_CONFIG', where(`.${field}: must be a non-empty list (leave it out to allow all)`));
    }
    return value;
  };
  const origins: OriginPattern[] = (list('origins') ?? []).map((raw, i) => originPattern(raw, where(`.origins[${i}]`)));
  const chainList = list('chains');
  const chains = chainList?.map((c, i) => {
    if (!Number.isSafeInteger(c) || (c as number) <= 0) {
      throw new GatewayError('BAD_CONFIG', where(`.chains[${i}]: must be a chain id, got ${JSON.stringify(c)}`));
    }
    return c as number;
  });
  const channelList = list('channels');
  const channels = channelList?.map((c, i) => {
    if (c !== 'blocks' && c !== 'activity') {
      throw new GatewayError('BAD_CONFIG', where(`.channels[${i}]: must be "blocks" or "activity"`));
    }
    return c as Channel;
  });
  const addressList = list('addresses');
  const addresses = addressList?.map((a, i) => {
    const address = toAddress(a);
    if (address === undefined) {
      throw new GatewayError('BAD_CONFIG', where(`.addresses[${i}]: not an address: ${JSON.stringify(a)}`));
    }
    return address;
  });
  return {
    name,
    origins,
    ...(chains === undefined ? {} : { chains: new Set(chains) }),
    ...(channels === undefined ? {} : { channels: new Set(channels) }),
    ...(addresses === undefined ? {} : { addresses: new Set<Hex>(addresses) }),
    limits: limits(entry['limits'], defaults, where),
  };
}

function limits(raw: unknown, defaults: KeyLimits, where: (path: string) => string): KeyLimits {
  if (raw === undefined) return defaults;
  if (!isObject(raw)) throw new GatewayError('BAD_CONFIG', where('.limits: must be an object'));
  const out: Record<string, number> = { ...defaults };
  for (const [field, value] of Object.entries(raw)) {
    // Own keys only: `toString` or `__proto__` must be an unknown quota, not Object.prototype's.
    const range = Object.hasOwn(LIMIT_RANGES, field) ? LIMIT_RANGES[field as keyof KeyLimits] : undefined;
    if (range === undefined) {
      throw new GatewayError(
        'BAD_CONFIG',
        where(`.limits.${field}: unknown quota (known: ${Object.keys(LIMIT_RANGES).join(', ')})`),
      );
    }
    const [min, max] = range;
    if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
      throw new GatewayError(
        'BAD_CONFIG',
        where(`.limits.${field}: must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`),
      );
    }
    out[field] = value as number;
  }
  return out as unknown as KeyLimits;
}

function originPattern(raw: unknown, where: string): OriginPattern {
  const pattern = typeof raw === 'string' ? parseOriginPattern(raw) : undefined;
  if (pattern === undefined) {
    throw new GatewayError(
      'BAD_CONFIG',
      `${where}: must be an origin like https://app.example or https://*.example, or *; got ${JSON.stringify(raw)}`,
    );
  }
  return pattern;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
