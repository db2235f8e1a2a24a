import { createHash, generateKeyPairSync, KeyObject } from 'node:crypto';
import { generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hex } from '../domain/types.ts';
import {
  type AccessProfile,
  type Admission,
  type ApiKey,
  type Auth,
  algorithmOf,
  createAuth,
  type Grant,
  hashKey,
  type KeyLimits,
  MAX_CREDENTIAL_LENGTH,
  type TokenConfig,
} from './createAuth.ts';
import { type OriginPattern, parseOriginPattern } from './matchOrigin.ts';

const A = '0x00000000000000000000000000000000000000aa' as Hex;
const B = '0x00000000000000000000000000000000000000bb' as Hex;
const C = '0x00000000000000000000000000000000000000cc' as Hex;
const LIMITS: KeyLimits = { maxConnections: 0, maxSubscriptions: 100, maxAddresses: 1000, maxRequestsPerSecond: 50 };
const ALICE_KEY = 'alice-key-0123456789abcdef';
const BOB_KEY = 'bob-key-0123456789abcdef';
const SECRET = new TextEncoder().encode('a-secret-of-at-least-32-bytes-long!!');
const OTHER_SECRET = new TextEncoder().encode('another-secret-of-32-bytes-or-more!!');
const APP = 'https://app.example';

function origins(...raw: string[]): OriginPattern[] {
  return raw.map((text) => {
    const pattern = parseOriginPattern(text);
    if (pattern === undefined) throw new Error(`not a pattern: ${text}`);
    return pattern;
  });
}

function apiKey(name: string, text: string, restrictions: Partial<AccessProfile> = {}): ApiKey {
  return { name, sha256: hashKey(text), origins: [], limits: LIMITS, ...restrictions };
}

function tokenProfile(restrictions: Partial<AccessProfile> = {}): AccessProfile {
  return { name: 'token', origins: [], limits: LIMITS, ...restrictions };
}

function hs256(restrictions: Partial<AccessProfile> = {}, claims: Partial<TokenConfig> = {}): TokenConfig {
  return { key: SECRET, algorithm: 'HS256', profile: tokenProfile(restrictions), ...claims };
}

/** Now, in seconds since the epoch (JWT time). */
function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

/** A token signed with `key` and `alg`, valid for 10 minutes unless the claims say otherwise. */
async function sign(
  claims: JWTPayload,
  key: Uint8Array | CryptoKey | KeyObject = SECRET,
  alg = 'HS256',
): Promise<string> {
  return new SignJWT({ exp: nowSec() + 600, ...claims }).setProtectedHeader({ alg }).sign(key);
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

async function granted(admission: Admission | Promise<Admission>): Promise<Grant | undefined> {
  const result = await admission;
  if (!result.ok) throw new Error(`refused: ${result.status} ${result.reason}: ${result.message}`);
  return result.grant;
}

async function grantOf(admission: Admission | Promise<Admission>): Promise<Grant> {
  const grant = await granted(admission);
  if (grant === undefined) throw new Error('admitted without a grant');
  return grant;
}

async function refused(admission: Admission | Promise<Admission>): Promise<Extract<Admission, { ok: false }>> {
  const result = await admission;
  if (result.ok) throw new Error(`admitted: ${JSON.stringify(result.grant)}`);
  return result;
}

describe('hashKey', () => {
  it('gives the SHA-256 of the UTF-8 text', () => {
    expect(hashKey('abc').toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hashKey('clé-ünïcode-🔑')).toEqual(
      createHash('sha256').update(Buffer.from('clé-ünïcode-🔑', 'utf8')).digest(),
    );
  });
});

describe('algorithmOf', () => {
  it('pins RS256 to an RSA key', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(algorithmOf(publicKey)).toBe('RS256');
  });

  it('pins ES256 to a P-256 key', () => {
    expect(algorithmOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)).toBe('ES256');
  });

  it('pins EdDSA to an Ed25519 key', () => {
    expect(algorithmOf(generateKeyPairSync('ed25519').publicKey)).toBe('EdDSA');
  });

  it.each([
    ['a P-384 key', () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey],
    ['a secp256k1 key', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey],
    ['an Ed448 key', () => generateKeyPairSync('ed448').publicKey],
    ['an X25519 key', () => generateKeyPairSync('x25519').publicKey],
  ])('pins nothing to %s', (_, key) => {
    expect(algorithmOf(key())).toBeUndefined();
  });
});

describe('createAuth without keys or tokens', () => {
  const open = createAuth({ keys: [], origins: [] });

  it('needs no credential and names no profile', () => {
    expect(open.required).toBe(false);
    expect(open.profiles).toEqual([]);
  });

  it('admits anything, without a grant', async () => {
    expect(await open.admit('', '')).toStrictEqual({ ok: true, grant: undefined });
    expect(await open.admit('whatever-was-sent', 'https://anyone.example')).toStrictEqual({
      ok: true,
      grant: undefined,
    });
  });

  it('still refuses an origin outside the global list with 403 origin', async () => {
    const auth = createAuth({ keys: [], origins: origins(APP) });
    expect(await granted(auth.admit('', APP))).toBeUndefined();
    expect(await granted(auth.admit('', ''))).toBeUndefined();
    const refusal = await refused(auth.admit('', 'https://evil.example'));
    expect(refusal).toMatchObject({ status: 403, reason: 'origin' });
    expect(refusal).not.toHaveProperty('profile');
    expect(refusal.message).toContain('https://evil.example');
  });
});

describe('createAuth with API keys', () => {
  const alice = apiKey('alice', ALICE_KEY, {
    chains: new Set([1, 137]),
    channels: new Set(['activity'] as const),
    addresses: new Set([A, B]),
  });
  const bob = apiKey('bob', BOB_KEY, { origins: origins(APP, 'https://*.bob.example') });
  const auth = createAuth({ keys: [alice, bob], origins: [] });

  it('needs a credential and names every key', () => {
    expect(auth.required).toBe(true);
    expect(auth.profiles).toEqual(['alice', 'bob']);
  });

  it('refuses a missing credential with 401 missing', async () => {
    expect(await refused(auth.admit('', ''))).toMatchObject({ status: 401, reason: 'missing' });
  });

  it('refuses an unknown key with 401 bad_key, without quoting it', async () => {
    const refusal = await refused(auth.admit('not-a-key-of-this-gateway', ''));
    expect(refusal).toMatchObject({ status: 401, reason: 'bad_key' });
    expect(refusal.message).not.toContain('not-a-key-of-this-gateway');
  });

  it('refuses a key that differs in one character or in case', async () => {
    expect(await refused(auth.admit(`${ALICE_KEY.slice(0, -1)}0`, ''))).toMatchObject({ reason: 'bad_key' });
    expect(await refused(auth.admit(ALICE_KEY.toUpperCase(), ''))).toMatchObject({ reason: 'bad_key' });
  });

  it('refuses a credential longer than the limit with 401, unread', async () => {
    const long = 'k'.repeat(MAX_CREDENTIAL_LENGTH + 1);
    const withLong = createAuth({ keys: [apiKey('long', long)], origins: [] });
    expect(await refused(withLong.admit(long, ''))).toMatchObject({ status: 401, reason: 'bad_key' });
  });

  it('admits a key at once (not a promise) with its profile, quota key and restrictions', () => {
    const admission = auth.admit(ALICE_KEY, '');
    expect(admission).not.toBeInstanceOf(Promise);
    expect(admission).toStrictEqual({
      ok: true,
      grant: {
        profile: alice,
        quotaKey: 'key:alice',
        chains: new Set([1, 137]),
        channels: new Set(['activity']),
        addresses: new Set([A, B]),
      },
    });
  });

  it('gives a key without restrictions a grant without restrictions or deadline', async () => {
    expect(await grantOf(auth.admit(BOB_KEY, APP))).toStrictEqual({ profile: bob, quotaKey: 'key:bob' });
  });

  it('admits a key with origins from a matching origin and from a program without Origin', async () => {
    expect((await grantOf(auth.admit(BOB_KEY, APP))).quotaKey).toBe('key:bob');
    expect((await grantOf(auth.admit(BOB_KEY, 'https://x.bob.example'))).quotaKey).toBe('key:bob');
    expect((await grantOf(auth.admit(BOB_KEY, ''))).quotaKey).toBe('key:bob');
  });

  it('refuses a key with origins from another origin with 403 origin, naming the key', async () => {
    const refusal = await refused(auth.admit(BOB_KEY, 'https://evil.example'));
    expect(refusal).toMatchObject({ status: 403, reason: 'origin', profile: 'bob' });
    expect(await refused(auth.admit(BOB_KEY, 'null'))).toMatchObject({ status: 403, reason: 'origin' });
  });

  it('lets a key without origins be used from any origin', async () => {
    expect((await grantOf(auth.admit(ALICE_KEY, 'https://anywhere.example'))).quotaKey).toBe('key:alice');
  });

  it('checks the global origins before the key', async () => {
    const guarded = createAuth({ keys: [alice], origins: origins(APP) });
    const refusal = await refused(guarded.admit(ALICE_KEY, 'https://evil.example'));
    expect(refusal).toMatchObject({ status: 403, reason: 'origin' });
    expect(refusal).not.toHaveProperty('profile');
    expect((await refused(guarded.admit('', 'https://evil.example'))).reason).toBe('origin');
    expect((await grantOf(guarded.admit(ALICE_KEY, APP))).quotaKey).toBe('key:alice');
  });

  it('takes a token-shaped credential for a key when no tokens are configured', async () => {
    const token = await sign({ sub: 'user-1' });
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_key' });
  });
});

describe('createAuth with HS256 tokens', () => {
  const auth = createAuth({ keys: [], origins: [], tokens: hs256() });

  it('needs a credential and names the token profile', () => {
    expect(auth.required).toBe(true);
    expect(auth.profiles).toEqual(['token']);
  });

  it('admits a valid token with its subject, quota key and deadline', async () => {
    const exp = nowSec() + 600;
    const grant = await grantOf(auth.admit(await sign({ sub: 'user-1', exp }), ''));
    expect(grant).toStrictEqual({
      profile: tokenProfile(),
      quotaKey: 'token:user-1',
      subject: 'user-1',
      expiresAtMs: exp * 1000,
    });
  });

  it('counts tokens without a subject together', async () => {
    const grant = await grantOf(auth.admit(await sign({}), ''));
    expect(grant.quotaKey).toBe('token');
    expect(grant).not.toHaveProperty('subject');
  });

  it('refuses an expired token with 401 expired_token', async () => {
    const token = await sign({ sub: 'user-1', exp: nowSec() - 60 });
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'expired_token' });
  });

  it('tolerates a few seconds of clock difference on exp', async () => {
    const token = await sign({ sub: 'user-1', exp: nowSec() - 1 });
    expect((await grantOf(auth.admit(token, ''))).subject).toBe('user-1');
  });

  it('refuses a token that is not valid yet (nbf) with 401 bad_token', async () => {
    const token = await sign({ sub: 'user-1', nbf: nowSec() + 300 });
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses a token without exp with 401 bad_token', async () => {
    const token = await new SignJWT({ sub: 'user-1' }).setProtectedHeader({ alg: 'HS256' }).sign(SECRET);
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses a token signed with another secret with 401 bad_token', async () => {
    const token = await sign({ sub: 'user-1' }, OTHER_SECRET);
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses a token whose payload was changed after signing', async () => {
    const [header, , signature] = (await sign({ sub: 'user-1' })).split('.');
    const forged = `${header}.${base64url({ sub: 'admin', exp: nowSec() + 600 })}.${signature}`;
    expect(await refused(auth.admit(forged, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses a token signed with HS512 and the same secret with 401 bad_token', async () => {
    const token = await sign({ sub: 'user-1' }, SECRET, 'HS512');
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses an RS256 token when HS256 is configured with 401 bad_token', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const token = await sign({ sub: 'user-1' }, privateKey, 'RS256');
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses an unsigned token (alg none) with 401 bad_token', async () => {
    const token = `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ sub: 'user-1', exp: nowSec() + 600 })}.${base64url('x')}`;
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses an unsigned token with an empty signature with 401', async () => {
    const token = `${base64url({ alg: 'none' })}.${base64url({ sub: 'user-1', exp: nowSec() + 600 })}.`;
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401 });
  });

  it('refuses a JWT-shaped string that is not a token with 401 bad_token', async () => {
    expect(await refused(auth.admit('abc.def.ghi', ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses a token longer than the limit with 401, unread', async () => {
    const token = await sign({ sub: 'user-1', pad: 'p'.repeat(MAX_CREDENTIAL_LENGTH) });
    expect(token.length).toBeGreaterThan(MAX_CREDENTIAL_LENGTH);
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401 });
  });

  it('takes a credential that is not token-shaped for a key, refused with 401 bad_key', async () => {
    expect(await refused(auth.admit(ALICE_KEY, ''))).toMatchObject({ status: 401, reason: 'bad_key' });
  });

  it('admits both keys and tokens when both are configured', async () => {
    const both = createAuth({ keys: [apiKey('alice', ALICE_KEY)], origins: [], tokens: hs256() });
    expect(both.profiles).toEqual(['alice', 'token']);
    expect((await grantOf(both.admit(ALICE_KEY, ''))).quotaKey).toBe('key:alice');
    expect((await grantOf(both.admit(await sign({ sub: 'u' }), ''))).quotaKey).toBe('token:u');
  });
});

describe('createAuth: issuer and audience of tokens', () => {
  const auth = createAuth({
    keys: [],
    origins: [],
    tokens: hs256({}, { issuer: 'https://issuer.example', audience: 'blockcast' }),
  });

  it('admits a token with the configured iss and aud', async () => {
    const token = await sign({ sub: 'u', iss: 'https://issuer.example', aud: 'blockcast' });
    expect((await grantOf(auth.admit(token, ''))).subject).toBe('u');
  });

  it.each([
    ['another issuer', { iss: 'https://evil.example', aud: 'blockcast' }],
    ['another audience', { iss: 'https://issuer.example', aud: 'other' }],
    ['no issuer', { aud: 'blockcast' }],
    ['no audience', { iss: 'https://issuer.example' }],
  ])('refuses a token with %s with 401 bad_token', async (_, claims) => {
    const token = await sign({ sub: 'u', ...claims });
    expect(await refused(auth.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });
});

describe('createAuth: claims that narrow a token', () => {
  const profile = {
    chains: new Set([1, 137]),
    channels: new Set(['blocks', 'activity'] as const),
    addresses: new Set([A, B]),
  };
  const auth = createAuth({ keys: [], origins: [], tokens: hs256(profile) });
  const open = createAuth({ keys: [], origins: [], tokens: hs256() });

  it('gives a token without claims the restrictions of its profile', async () => {
    const grant = await grantOf(auth.admit(await sign({ sub: 'u' }), ''));
    expect(grant).toMatchObject({ chains: profile.chains, channels: profile.channels, addresses: profile.addresses });
  });

  it('gives a token without claims under an open profile no restrictions', async () => {
    const grant = await grantOf(open.admit(await sign({ sub: 'u' }), ''));
    expect(grant).not.toHaveProperty('addresses');
    expect(grant).not.toHaveProperty('chains');
    expect(grant).not.toHaveProperty('channels');
  });

  it('narrows to the addresses of the token, lowercased', async () => {
    const token = await sign({ sub: 'u', addresses: [B.toUpperCase().replace('0X', '0x')] });
    expect((await grantOf(auth.admit(token, ''))).addresses).toEqual(new Set([B]));
  });

  it("drops the addresses of a token that are outside its profile's", async () => {
    const token = await sign({ sub: 'u', addresses: [A, C] });
    expect((await grantOf(auth.admit(token, ''))).addresses).toEqual(new Set([A]));
  });

  it('keeps every address of a token under an open profile', async () => {
    const token = await sign({ sub: 'u', addresses: [A, C] });
    expect((await grantOf(open.admit(token, ''))).addresses).toEqual(new Set([A, C]));
  });

  it('gives an empty address list when none of the token is allowed', async () => {
    const token = await sign({ sub: 'u', addresses: [C] });
    expect((await grantOf(auth.admit(token, ''))).addresses).toEqual(new Set());
  });

  it.each([
    ['an address that is not one', { addresses: [A, '0x12'] }],
    ['addresses that are not a list', { addresses: A }],
    ['an address that is a number', { addresses: [170] }],
    ['a chain id of 0', { chains: [0] }],
    ['a chain id that is a string', { chains: ['1'] }],
    ['a fractional chain id', { chains: [1.5] }],
    ['chains that are not a list', { chains: 1 }],
    ['an unknown channel', { channels: ['logs'] }],
    ['channels that are not a list', { channels: 'blocks' }],
  ])('refuses a token with %s with 401 bad_token', async (_, claims) => {
    const refusal = await refused(open.admit(await sign({ sub: 'u', ...claims }), ''));
    expect(refusal).toMatchObject({ status: 401, reason: 'bad_token' });
    expect(refusal.message).toMatch(new RegExp(Object.keys(claims)[0] as string));
  });

  it("narrows to the chains of the token within its profile's", async () => {
    const token = await sign({ sub: 'u', chains: [1, 10] });
    expect((await grantOf(auth.admit(token, ''))).chains).toEqual(new Set([1]));
    expect((await grantOf(open.admit(token, ''))).chains).toEqual(new Set([1, 10]));
  });

  it("narrows to the channels of the token within its profile's", async () => {
    const token = await sign({ sub: 'u', channels: ['blocks'] });
    expect((await grantOf(auth.admit(token, ''))).channels).toEqual(new Set(['blocks']));
    const activityOnly = createAuth({
      keys: [],
      origins: [],
      tokens: hs256({ channels: new Set(['activity'] as const) }),
    });
    expect((await grantOf(activityOnly.admit(token, ''))).channels).toEqual(new Set());
  });
});

describe('createAuth: origins of tokens', () => {
  const auth = createAuth({ keys: [], origins: [], tokens: hs256({ origins: origins(APP) }) });

  it('admits a token from an allowed origin and from a program without Origin', async () => {
    const token = await sign({ sub: 'u' });
    expect((await grantOf(auth.admit(token, APP))).subject).toBe('u');
    expect((await grantOf(auth.admit(token, ''))).subject).toBe('u');
  });

  it('refuses a valid token from another origin with 403 origin, naming the token profile', async () => {
    const refusal = await refused(auth.admit(await sign({ sub: 'u' }), 'https://evil.example'));
    expect(refusal).toMatchObject({ status: 403, reason: 'origin', profile: 'token' });
  });

  it('refuses a bad token from another origin as a bad token', async () => {
    const token = await sign({ sub: 'u' }, OTHER_SECRET);
    expect(await refused(auth.admit(token, 'https://evil.example'))).toMatchObject({
      status: 401,
      reason: 'bad_token',
    });
  });
});

describe('createAuth with public-key tokens', () => {
  let es256: Auth;
  let signer: CryptoKey;

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    signer = pair.privateKey;
    const key = KeyObject.from(pair.publicKey);
    const algorithm = algorithmOf(key);
    if (algorithm === undefined) throw new Error('a P-256 key pins no algorithm');
    es256 = createAuth({ keys: [], origins: [], tokens: { key, algorithm, profile: tokenProfile() } });
  });

  it('admits an ES256 token signed with the private key', async () => {
    const exp = nowSec() + 300;
    const grant = await grantOf(es256.admit(await sign({ sub: 'svc', exp }, signer, 'ES256'), ''));
    expect(grant).toMatchObject({ quotaKey: 'token:svc', subject: 'svc', expiresAtMs: exp * 1000 });
  });

  it('refuses an ES256 token signed with another key', async () => {
    const other = await generateKeyPair('ES256');
    const token = await sign({ sub: 'svc' }, other.privateKey, 'ES256');
    expect(await refused(es256.admit(token, ''))).toMatchObject({ status: 401, reason: 'bad_token' });
  });

  it('refuses an HS256 token (signed with any secret) when a public key is configured', async () => {
    expect(await refused(es256.admit(await sign({ sub: 'svc' }), ''))).toMatchObject({
      status: 401,
      reason: 'bad_token',
    });
  });

  it('admits an EdDSA token with an Ed25519 key', async () => {
    const pair = generateKeyPairSync('ed25519');
    const eddsa = createAuth({
      keys: [],
      origins: [],
      tokens: { key: pair.publicKey, algorithm: 'EdDSA', profile: tokenProfile() },
    });
    const token = await sign({ sub: 'svc' }, pair.privateKey, 'EdDSA');
    expect((await grantOf(eddsa.admit(token, ''))).subject).toBe('svc');
  });
});

describe('createAuth: refresh', () => {
  const auth = createAuth({ keys: [apiKey('alice', ALICE_KEY)], origins: [], tokens: hs256() });

  async function tokenGrant(sub: string, exp = nowSec() + 60): Promise<Grant> {
    return grantOf(auth.admit(await sign({ sub, exp }), ''));
  }

  it('refuses to refresh a key connection with BAD_REQUEST', async () => {
    const grant = await grantOf(auth.admit(ALICE_KEY, ''));
    const refresh = await auth.refresh(grant, await sign({ sub: 'user-1' }));
    expect(refresh).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
  });

  it('replaces the grant by a newer token of the same subject, with its later deadline', async () => {
    const old = await tokenGrant('user-1');
    const exp = nowSec() + 3600;
    const refresh = await auth.refresh(old, await sign({ sub: 'user-1', exp }));
    if (!refresh.ok) throw new Error(`refused: ${refresh.code}: ${refresh.message}`);
    expect(refresh.grant).toStrictEqual({
      profile: old.profile,
      quotaKey: 'token:user-1',
      subject: 'user-1',
      expiresAtMs: exp * 1000,
    });
    expect(refresh.grant.expiresAtMs).toBeGreaterThan(old.expiresAtMs as number);
  });

  it('takes the claims of the new token', async () => {
    const refresh = await auth.refresh(await tokenGrant('user-1'), await sign({ sub: 'user-1', chains: [5] }));
    expect(refresh).toMatchObject({ ok: true, grant: { chains: new Set([5]) } });
  });

  it('refuses a token of another subject with FORBIDDEN', async () => {
    const refresh = await auth.refresh(await tokenGrant('user-1'), await sign({ sub: 'user-2' }));
    expect(refresh).toMatchObject({ ok: false, code: 'FORBIDDEN' });
  });

  it('refuses a token without a subject for a connection with one with FORBIDDEN', async () => {
    expect(await auth.refresh(await tokenGrant('user-1'), await sign({}))).toMatchObject({
      ok: false,
      code: 'FORBIDDEN',
    });
  });

  it.each([
    ['signed with another secret', () => sign({ sub: 'user-1' }, OTHER_SECRET)],
    ['expired', () => sign({ sub: 'user-1', exp: nowSec() - 60 })],
    ['signed with HS512', () => sign({ sub: 'user-1' }, SECRET, 'HS512')],
    ['with a bad addresses claim', () => sign({ sub: 'user-1', addresses: ['nope'] })],
  ])('refuses a token %s with UNAUTHORIZED', async (_, token) => {
    expect(await auth.refresh(await tokenGrant('user-1'), await token())).toMatchObject({
      ok: false,
      code: 'UNAUTHORIZED',
    });
  });

  it.each([
    ['a string that is not a JWT', 'not a token'],
    ['an API key', ALICE_KEY],
    ['an empty string', ''],
    ['a JWT-shaped string over the length limit', `${'a'.repeat(MAX_CREDENTIAL_LENGTH)}.b.c`],
  ])('refuses %s with BAD_REQUEST', async (_, token) => {
    expect(await auth.refresh(await tokenGrant('user-1'), token)).toMatchObject({ ok: false, code: 'BAD_REQUEST' });
  });
});
