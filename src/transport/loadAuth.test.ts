import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../domain/errors.ts';
import { createAuth } from './createAuth.ts';
import { type AuthSettings, loadAuth } from './loadAuth.ts';
import { parseOriginPattern } from './matchOrigin.ts';

const dir = mkdtempSync(join(tmpdir(), 'blockcast-loadAuth-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const SETTINGS: AuthSettings = {
  apiKeyHashes: [],
  keysFile: '',
  allowedOrigins: [],
  jwtSecret: '',
  jwtPublicKey: '',
  jwtIssuer: '',
  jwtAudience: '',
  maxSubscriptions: 100,
  maxAddresses: 10_000,
  maxRequestsPerSecond: 50,
};
const DEFAULT_LIMITS = { maxConnections: 0, maxSubscriptions: 100, maxAddresses: 10_000, maxRequestsPerSecond: 50 };
const ALICE_KEY = 'alice-key-0123456789abcdef';
const BOB_KEY = 'bob-key-0123456789abcdef';
const SECRET = 'a-secret-of-at-least-32-bytes-long!!';
const A = '0x00000000000000000000000000000000000000aa';
const CHECKSUMMED = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed';

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

let files = 0;
/** A new file in the temporary folder holding `content` (JSON unless it is a string); its path. */
function write(content: unknown, name = `file-${++files}.json`): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

function pem(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

/** The error `loadAuth` throws for these settings; fails the test when it throws none. */
function authError(settings: Partial<AuthSettings>): GatewayError {
  try {
    loadAuth({ ...SETTINGS, ...settings });
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error(`loadAuth accepted ${JSON.stringify(settings)}`);
}

/** The error for a keys file of `content`, after checking that it names the file. */
function fileError(content: unknown): GatewayError {
  const keysFile = write(content);
  const error = authError({ keysFile });
  expect(error.code).toBe('BAD_CONFIG');
  expect(error.message).toContain(`keysFile: ${keysFile}: `);
  return error;
}

describe('loadAuth: what it gives', () => {
  it('refuses a keys file with no key when nothing else guards the gateway (it would listen on every interface)', () => {
    expect(fileError({ keys: [] }).message).toMatch(/keys: holds no key/);
    expect(fileError({}).message).toMatch(/keys: holds no key/);
    expect(loadAuth({ ...SETTINGS, keysFile: write({ keys: [] }), jwtSecret: SECRET }).keys).toEqual([]);
  });

  it('gives no keys, no origins and no tokens when nothing is configured', () => {
    expect(loadAuth(SETTINGS)).toStrictEqual({ keys: [], origins: [] });
  });

  it('reads a full keys file into keys and a token profile', () => {
    const keysFile = write({
      keys: [
        {
          name: 'alice',
          sha256: sha256Hex(ALICE_KEY).toUpperCase(),
          origins: ['https://app.example', 'https://*.alice.example'],
          chains: [1, 137],
          channels: ['activity'],
          addresses: [CHECKSUMMED, A],
          limits: { maxConnections: 10, maxAddresses: 50 },
        },
        { name: 'bob.svc_2', key: BOB_KEY },
      ],
      tokens: { origins: ['https://app.example'], chains: [1], limits: { maxSubscriptions: 3 } },
    });
    const options = loadAuth({ ...SETTINGS, keysFile, jwtSecret: SECRET });
    expect(options.keys).toStrictEqual([
      {
        name: 'alice',
        sha256: createHash('sha256').update(ALICE_KEY).digest(),
        origins: [parseOriginPattern('https://app.example'), parseOriginPattern('https://*.alice.example')],
        chains: new Set([1, 137]),
        channels: new Set(['activity']),
        addresses: new Set([CHECKSUMMED.toLowerCase(), A]),
        limits: { maxConnections: 10, maxSubscriptions: 100, maxAddresses: 50, maxRequestsPerSecond: 50 },
      },
      {
        name: 'bob.svc_2',
        sha256: createHash('sha256').update(BOB_KEY).digest(),
        origins: [],
        limits: DEFAULT_LIMITS,
      },
    ]);
    expect(options.tokens).toStrictEqual({
      key: new TextEncoder().encode(SECRET),
      algorithm: 'HS256',
      profile: {
        name: 'token',
        origins: [parseOriginPattern('https://app.example')],
        chains: new Set([1]),
        limits: { ...DEFAULT_LIMITS, maxSubscriptions: 3 },
      },
    });
  });

  it('gives keys that createAuth admits by their text', async () => {
    const keysFile = write({
      keys: [
        { name: 'alice', sha256: sha256Hex(ALICE_KEY).toUpperCase() },
        { name: 'bob', key: BOB_KEY },
      ],
    });
    const auth = createAuth(loadAuth({ ...SETTINGS, keysFile }));
    expect(await auth.admit(ALICE_KEY, '')).toMatchObject({ ok: true, grant: { quotaKey: 'key:alice' } });
    expect(await auth.admit(BOB_KEY, '')).toMatchObject({ ok: true, grant: { quotaKey: 'key:bob' } });
    expect(await auth.admit(sha256Hex(ALICE_KEY), '')).toMatchObject({ ok: false, reason: 'bad_key' });
  });

  it('names the keys of the flags key-<first 8 hex digits>, with the default limits and no restrictions', () => {
    const hex = sha256Hex(ALICE_KEY);
    expect(loadAuth({ ...SETTINGS, apiKeyHashes: [hex] }).keys).toStrictEqual([
      { name: `key-${hex.slice(0, 8)}`, sha256: Buffer.from(hex, 'hex'), origins: [], limits: DEFAULT_LIMITS },
    ]);
  });

  it('puts the keys of the flags before those of the file', () => {
    const keysFile = write({ keys: [{ name: 'bob', key: BOB_KEY }] });
    const names = loadAuth({ ...SETTINGS, keysFile, apiKeyHashes: [sha256Hex(ALICE_KEY)] }).keys.map((k) => k.name);
    expect(names).toEqual([`key-${sha256Hex(ALICE_KEY).slice(0, 8)}`, 'bob']);
  });

  it('accepts a file with a token profile only', () => {
    const keysFile = write({ tokens: { channels: ['blocks'] } });
    const options = loadAuth({ ...SETTINGS, keysFile, jwtSecret: SECRET });
    expect(options.keys).toEqual([]);
    expect(options.tokens?.profile.channels).toEqual(new Set(['blocks']));
  });

  it('gives tokens the default profile without a "tokens" section', () => {
    expect(loadAuth({ ...SETTINGS, jwtSecret: SECRET }).tokens?.profile).toStrictEqual({
      name: 'token',
      origins: [],
      limits: DEFAULT_LIMITS,
    });
  });

  it('passes the issuer and audience of tokens on', () => {
    const tokens = loadAuth({ ...SETTINGS, jwtSecret: SECRET, jwtIssuer: 'https://issuer', jwtAudience: 'gw' }).tokens;
    expect(tokens).toMatchObject({ issuer: 'https://issuer', audience: 'gw' });
    expect(loadAuth({ ...SETTINGS, jwtSecret: SECRET }).tokens).not.toHaveProperty('issuer');
  });

  it('counts the secret in bytes: 16 two-byte characters are enough', () => {
    expect(loadAuth({ ...SETTINGS, jwtSecret: 'é'.repeat(16) }).tokens?.key).toHaveLength(32);
  });

  it('reads a P-256 public key for ES256 tokens', () => {
    const jwtPublicKey = write(pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey), 'p256.pem');
    const tokens = loadAuth({ ...SETTINGS, jwtPublicKey }).tokens;
    expect(tokens?.algorithm).toBe('ES256');
    expect((tokens?.key as KeyObject | undefined)?.asymmetricKeyType).toBe('ec');
  });

  it('reads an Ed25519 public key for EdDSA tokens', () => {
    const jwtPublicKey = write(pem(generateKeyPairSync('ed25519').publicKey), 'ed25519.pem');
    expect(loadAuth({ ...SETTINGS, jwtPublicKey }).tokens?.algorithm).toBe('EdDSA');
  });

  it('parses the global origins', () => {
    expect(loadAuth({ ...SETTINGS, allowedOrigins: ['https://app.example', '*'] }).origins).toStrictEqual([
      parseOriginPattern('https://app.example'),
      parseOriginPattern('*'),
    ]);
  });

  it('accepts a quota at either end of its range', () => {
    const keysFile = write({
      keys: [{ name: 'edge', key: ALICE_KEY, limits: { maxConnections: 0, maxSubscriptions: 10_000 } }],
    });
    expect(loadAuth({ ...SETTINGS, keysFile }).keys[0]?.limits).toMatchObject({
      maxConnections: 0,
      maxSubscriptions: 10_000,
    });
  });
});

describe('loadAuth: mistakes in the keys file', () => {
  const alice = { name: 'alice', key: ALICE_KEY };
  /** A file whose second key is `bob` with `fields`. */
  const second = (fields: Record<string, unknown>): unknown => ({
    keys: [alice, { name: 'bob', key: BOB_KEY, ...fields }],
  });

  it.each([
    ['an unknown top-level setting', { keys: [], key: [] }, 'key: unknown setting (known: keys, tokens)'],
    ['a file that is a list', [alice], 'must hold a JSON object with "keys"'],
    ['keys that are not a list', { keys: alice }, 'keys: must be a list'],
    ['a key that is not an object', { keys: [alice, 'bob'] }, 'keys[1]: must be an object'],
    ['an unknown key field', second({ colour: 'red' }), 'keys[1].colour: unknown setting'],
    ['an unknown quota', second({ limits: { maxConnection: 5 } }), 'keys[1].limits.maxConnection: unknown quota'],
    ['a quota named toString', second({ limits: { toString: 5 } }), 'keys[1].limits.toString: unknown quota'],
    ['limits that are not an object', second({ limits: [5] }), 'keys[1].limits: must be an object'],
    [
      'a negative quota',
      second({ limits: { maxConnections: -1 } }),
      'keys[1].limits.maxConnections: must be an integer from 0 to 10000000, got -1',
    ],
    [
      'a quota above its range',
      second({ limits: { maxConnections: 10_000_001 } }),
      'keys[1].limits.maxConnections: must be an integer',
    ],
    ['a zero quota below its range', second({ limits: { maxSubscriptions: 0 } }), 'keys[1].limits.maxSubscriptions'],
    ['a fractional quota', second({ limits: { maxAddresses: 1.5 } }), 'keys[1].limits.maxAddresses'],
    ['a quota that is a string', second({ limits: { maxRequestsPerSecond: '5' } }), 'limits.maxRequestsPerSecond'],
    ['a key that is too short', second({ key: 'x'.repeat(15) }), 'keys[1].key: must be a string of at least 16'],
    ['a key that is not a string', second({ key: 1_234_567_890_123_456 }), 'keys[1].key: must be a string'],
    ['an unknown token field', { tokens: { name: 'x' } }, 'tokens.name: unknown setting'],
    ['a token quota out of range', { tokens: { limits: { maxAddresses: 0 } } }, 'tokens.limits.maxAddresses'],
  ])('refuses %s, naming where', (_, content, message) => {
    expect(fileError(content).message).toContain(message);
  });

  it('refuses a quota named __proto__ as an unknown quota', () => {
    const keysFile = write(`{"keys":[{"name":"a","key":"${ALICE_KEY}","limits":{"__proto__":5}}]}`);
    const error = authError({ keysFile });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toContain('keys[0].limits.__proto__: unknown quota');
  });

  it.each([
    ['empty', ''],
    ['with a space', 'al ice'],
    ['starting with a dash', '-alice'],
    ['of 64 characters', 'a'.repeat(64)],
    ['a number', 7],
    ['missing', undefined],
    ['reserved: token', 'token'],
    ['reserved: none', 'none'],
  ])('refuses a name %s', (_, name) => {
    expect(fileError({ keys: [alice, { name, key: BOB_KEY }] }).message).toContain('keys[1].name: must be 1 to 63');
  });

  it('accepts a name of 63 letters, digits, _ . -', () => {
    const name = `A1_.-${'z'.repeat(58)}`;
    expect(loadAuth({ ...SETTINGS, keysFile: write({ keys: [{ name, key: ALICE_KEY }] }) }).keys[0]?.name).toBe(name);
  });

  it('refuses a key given both as sha256 and as key', () => {
    expect(fileError(second({ sha256: sha256Hex(BOB_KEY) })).message).toContain('keys[1].sha256: give the key');
  });

  it('refuses a key given neither as sha256 nor as key', () => {
    expect(fileError({ keys: [alice, { name: 'bob' }] }).message).toContain('keys[1].sha256: give the key');
  });

  it.each([
    ['63 hex digits', sha256Hex(BOB_KEY).slice(1)],
    ['65 hex digits', `${sha256Hex(BOB_KEY)}0`],
    ['a non-hex digit', `${sha256Hex(BOB_KEY).slice(1)}g`],
    ['a 0x prefix', `0x${sha256Hex(BOB_KEY).slice(2)}`],
    ['a number', 12],
  ])('refuses a sha256 with %s', (_, sha256) => {
    expect(fileError({ keys: [alice, { name: 'bob', sha256 }] }).message).toContain(
      'keys[1].sha256: must be the SHA-256',
    );
  });

  it.each([
    ['with a path', 'https://app.example/x'],
    ['without a scheme', 'app.example'],
    ['not a string', 1],
  ])('refuses an origin %s, naming its index', (_, origin) => {
    const error = fileError(second({ origins: ['https://ok.example', origin] }));
    expect(error.message).toContain(`keys[1].origins[1]: must be an origin`);
    expect(error.message).toContain(JSON.stringify(origin));
  });

  it.each([0, -1, 1.5, '1', null])('refuses chain id %j', (chain) => {
    expect(fileError(second({ chains: [1, chain] })).message).toContain(
      `keys[1].chains[1]: must be a chain id, got ${JSON.stringify(chain)}`,
    );
  });

  it.each(['logs', 'Blocks', 1])('refuses channel %j', (channel) => {
    expect(fileError(second({ channels: ['blocks', channel] })).message).toContain(
      'keys[1].channels[1]: must be "blocks" or "activity"',
    );
  });

  it.each(['0x12', `0X${'a'.repeat(40)}`, 170])('refuses address %j', (address) => {
    expect(fileError(second({ addresses: [A, address] })).message).toContain(
      `keys[1].addresses[1]: not an address: ${JSON.stringify(address)}`,
    );
  });

  it.each(['origins', 'chains', 'channels', 'addresses'])('refuses an empty or non-list %s', (field) => {
    expect(fileError(second({ [field]: [] })).message).toContain(`keys[1].${field}: must be a non-empty list`);
    expect(fileError(second({ [field]: 'blocks' })).message).toContain(`keys[1].${field}: must be a non-empty list`);
  });

  it('refuses a name given twice, naming the second', () => {
    const error = fileError({ keys: [alice, { name: 'alice', key: BOB_KEY }] });
    expect(error.message).toContain('keys[1].name: the name alice is given twice');
  });

  it('refuses a key given twice, once by digest and once by text', () => {
    const error = fileError({ keys: [alice, { name: 'bob', sha256: sha256Hex(ALICE_KEY) }] });
    expect(error.message).toContain('keys[1]: key bob is given twice');
  });

  it('refuses a key of the file that is also given by flag', () => {
    const keysFile = write({ keys: [{ name: 'alice', key: ALICE_KEY }] });
    const error = authError({ keysFile, apiKeyHashes: [sha256Hex(ALICE_KEY)] });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toContain(`keysFile: ${keysFile}: keys[0]: key alice is given twice`);
  });

  it('refuses a key given twice by flag', () => {
    const hex = sha256Hex(ALICE_KEY);
    const error = authError({ apiKeyHashes: [hex, hex] });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(/^apiKeys\[1\]/);
  });

  it('refuses a file that is not JSON', () => {
    const keysFile = write('{"keys": [', 'broken.json');
    const error = authError({ keysFile });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(/^keysFile: .*broken\.json is not JSON/);
    expect(error.cause).toBeInstanceOf(SyntaxError);
  });

  it('refuses a file that does not exist', () => {
    const keysFile = join(dir, 'missing.json');
    const error = authError({ keysFile });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toContain(`keysFile: cannot read ${keysFile}`);
  });
});

describe('loadAuth: mistakes in the token settings', () => {
  it('refuses a secret shorter than 32 bytes', () => {
    const error = authError({ jwtSecret: 's'.repeat(31) });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toBe('jwtSecret: must have at least 32 bytes, got 31');
  });

  it('never quotes the secret', () => {
    const jwtSecret = 'short-but-secret';
    expect(authError({ jwtSecret }).message).not.toContain(jwtSecret);
  });

  it('refuses a secret and a public key together', () => {
    const jwtPublicKey = write(pem(generateKeyPairSync('ed25519').publicKey), 'both.pem');
    const error = authError({ jwtSecret: SECRET, jwtPublicKey });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(/^jwtSecret: give either a secret or a public key/);
  });

  it('refuses a public key file that holds no key, naming it', () => {
    const jwtPublicKey = write('not a key\n', 'notakey.pem');
    const error = authError({ jwtPublicKey });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toContain(`jwtPublicKey: ${jwtPublicKey} is not a readable PEM public key`);
  });

  it('refuses a public key file that does not exist', () => {
    const jwtPublicKey = join(dir, 'missing.pem');
    expect(authError({ jwtPublicKey }).message).toContain(`jwtPublicKey: ${jwtPublicKey} is not a readable`);
  });

  it('refuses a P-384 public key, whose algorithm is not accepted', () => {
    const jwtPublicKey = write(pem(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey), 'p384.pem');
    const error = authError({ jwtPublicKey });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toContain(`jwtPublicKey: ${jwtPublicKey} must be an RSA, P-256 or Ed25519 key`);
  });

  it.each([
    ['an issuer', { jwtIssuer: 'https://issuer' }],
    ['an audience', { jwtAudience: 'gw' }],
  ])('refuses %s without a token key', (_, settings) => {
    const error = authError(settings);
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(/needs --jwt-secret or --jwt-public-key/);
  });

  it('refuses a "tokens" section without a token key, naming the file', () => {
    const error = fileError({ keys: [{ name: 'alice', key: ALICE_KEY }], tokens: { chains: [1] } });
    expect(error.message).toContain('tokens: needs --jwt-secret or --jwt-public-key');
  });

  it('refuses a bad global origin, naming the setting', () => {
    const error = authError({ allowedOrigins: ['https://app.example', 'ftp://files.example'] });
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(/^allowedOrigins: must be an origin/);
    expect(error.message).toContain('"ftp://files.example"');
  });
});
