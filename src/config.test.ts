import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfig, OPTIONS, usage } from './config.ts';
import { GatewayError } from './domain/errors.ts';

/** The error `loadConfig` throws for these inputs; fails the test when it throws none. */
function configError(argv: readonly string[], env: Record<string, string> = {}): GatewayError {
  try {
    loadConfig(argv, env);
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify({ argv, env })}`);
}

describe('loadConfig', () => {
  it('gives the defaults without flags or env', () => {
    expect(loadConfig([], {})).toEqual(DEFAULTS);
  });

  it('has the documented defaults', () => {
    expect(DEFAULTS).toMatchObject({ rpc: [], host: '127.0.0.1', port: 8080, maxMessageBytes: 1_048_576 });
  });

  it('ignores environment variables that are not its own', () => {
    expect(loadConfig([], { PORT: '1', BLOCKCAST_UNKNOWN: 'x' })).toEqual(DEFAULTS);
  });

  it('returns a frozen object', () => {
    const config = loadConfig(['--port', '9000'], {});
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('does not change DEFAULTS when it loads other values', () => {
    loadConfig(['--port', '9000', '--rpc', 'http://a:8545'], { BLOCKCAST_RPC: 'http://b:8545' });
    expect(DEFAULTS.port).toBe(8080);
    expect(DEFAULTS.rpc).toEqual([]);
  });

  it('reads every option from its environment variable', () => {
    const config = loadConfig([], {
      BLOCKCAST_HOST: '127.0.0.1',
      BLOCKCAST_PORT: '9001',
      BLOCKCAST_POLL_INTERVAL_MS: '250',
      BLOCKCAST_MAX_ADDRESSES: '5',
    });
    expect(config).toMatchObject({ host: '127.0.0.1', port: 9001, pollIntervalMs: 250, maxAddresses: 5 });
  });

  it('reads a flag and its value as two arguments', () => {
    expect(loadConfig(['--max-subscriptions', '7', '--host', '::1'], {})).toMatchObject({
      maxSubscriptions: 7,
      host: '::1',
    });
  });

  it('reads the --port=123 form', () => {
    expect(loadConfig(['--port=123'], {}).port).toBe(123);
  });

  it('keeps everything after the first = as the value', () => {
    expect(loadConfig(['--rpc=http://node:8545/?key=a=b'], {}).rpc).toEqual(['http://node:8545/?key=a=b']);
  });

  it('lets flags override the environment', () => {
    const config = loadConfig(['--port', '9002'], { BLOCKCAST_PORT: '9001', BLOCKCAST_HOST: '10.0.0.1' });
    expect(config.port).toBe(9002);
    expect(config.host).toBe('10.0.0.1');
  });

  it('lets the last of a repeated numeric flag win', () => {
    expect(loadConfig(['--port', '1', '--port', '2'], {}).port).toBe(2);
  });

  it('gives a list from a repeated --rpc flag, in order', () => {
    expect(loadConfig(['--rpc', 'http://a:8545', '--rpc', 'wss://b/ws'], {}).rpc).toEqual([
      'http://a:8545',
      'wss://b/ws',
    ]);
  });

  it('gives a list from a comma-separated BLOCKCAST_RPC, trimming spaces', () => {
    expect(loadConfig([], { BLOCKCAST_RPC: 'http://a:8545, https://b' }).rpc).toEqual(['http://a:8545', 'https://b']);
  });

  it('replaces the BLOCKCAST_RPC list with the --rpc flags', () => {
    expect(loadConfig(['--rpc', 'ws://c:8546'], { BLOCKCAST_RPC: 'http://a,http://b' }).rpc).toEqual(['ws://c:8546']);
  });

  it.each([
    ['0', 0],
    ['65535', 65_535],
  ])('accepts port %s at the edge of its range', (raw, port) => {
    expect(loadConfig(['--port', raw], {}).port).toBe(port);
  });

  it.each([
    ['port out of range', ['--port', '65536'], {}, /^port: --port must be an integer from 0 to 65535, got "65536"/],
    ['negative port', ['--port=-1'], {}, /^port: --port must be an integer/],
    ['non-integer port', ['--port', '80.5'], {}, /^port: --port must be an integer/],
    ['port that is a word', ['--port', 'http'], {}, /^port: --port must be an integer/],
    ['empty port', ['--port='], {}, /^port: --port must be an integer/],
    ['port out of range from env', [], { BLOCKCAST_PORT: '70000' }, /^port: BLOCKCAST_PORT must be an integer/],
    ['idle timeout below its range', ['--idle-timeout-sec', '7'], {}, /^idleTimeoutSec: --idle-timeout-sec must/],
    ['empty host', [], { BLOCKCAST_HOST: '' }, /^host: BLOCKCAST_HOST is empty/],
    ['missing value at the end', ['--port'], {}, /^port: --port needs a value/],
    ['rpc that is not a URL', ['--rpc', 'localhost'], {}, /^rpc: not a URL: "localhost"/],
    ['rpc with an ftp scheme', ['--rpc', 'ftp://a'], {}, /^rpc: "ftp:\/\/a" must be http, https, ws or wss/],
    ['bad rpc in a list from env', [], { BLOCKCAST_RPC: 'http://a,nope' }, /^rpc: not a URL: "nope"/],
    ['hex port', ['--port', '0x50'], {}, /^port: --port must be an integer/],
    ['port in exponent notation', ['--port', '1e3'], {}, /^port: --port must be an integer/],
    ['port with spaces', [], { BLOCKCAST_PORT: ' 80 ' }, /^port: BLOCKCAST_PORT must be an integer/],
    ['empty --rpc', ['--rpc='], {}, /^rpc: --rpc is empty/],
    ['empty BLOCKCAST_RPC', [], { BLOCKCAST_RPC: ' , ' }, /^rpc: BLOCKCAST_RPC is empty/],
    ['unknown flag', ['--prot', '80'], {}, /^unknown option "--prot"/],
    ['bare value', ['8080'], {}, /^unknown option "8080"/],
    [
      'mistyped flag with a secret value, not printed',
      ['--apikey=SECRET-0123456789'],
      {},
      /^unknown option "--apikey"\n/,
    ],
  ])('rejects %s with BAD_CONFIG naming the key', (_, argv, env, message) => {
    const error = configError(argv, env);
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(message);
  });

  it('freezes the rpc list too', () => {
    expect(Object.isFrozen(loadConfig(['--rpc', 'http://a'], {}).rpc)).toBe(true);
    expect(Object.isFrozen(DEFAULTS.rpc)).toBe(true);
  });

  it('shows the usage with an unknown flag', () => {
    expect(configError(['--nope']).message).toContain(usage());
  });
});

describe('loadConfig: auth and TLS', () => {
  const KEY = 'key-text-0123456789abcdef';
  const OTHER = 'other-key-0123456789abcdef';
  const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

  it('keeps the SHA-256 of an --api-key, never its text', () => {
    const config = loadConfig(['--api-key', KEY], {});
    expect(config.apiKeyHashes).toEqual([sha256Hex(KEY)]);
    expect(JSON.stringify(config)).not.toContain(KEY);
    expect(Object.isFrozen(config.apiKeyHashes)).toBe(true);
  });

  it('reads repeated and comma-separated --api-key flags, in order', () => {
    const third = 'third-key-0123456789abcdef';
    expect(loadConfig(['--api-key', `${KEY},${OTHER}`, '--api-key', third], {}).apiKeyHashes).toEqual([
      sha256Hex(KEY),
      sha256Hex(OTHER),
      sha256Hex(third),
    ]);
  });

  it('reads a comma-separated BLOCKCAST_API_KEYS, trimming spaces', () => {
    const config = loadConfig([], { BLOCKCAST_API_KEYS: ` ${KEY} , ${OTHER} ` });
    expect(config.apiKeyHashes).toEqual([sha256Hex(KEY), sha256Hex(OTHER)]);
    expect(JSON.stringify(config)).not.toContain(KEY);
    expect(JSON.stringify(config)).not.toContain(OTHER);
  });

  it('replaces the BLOCKCAST_API_KEYS list with the --api-key flags', () => {
    expect(loadConfig(['--api-key', OTHER], { BLOCKCAST_API_KEYS: KEY }).apiKeyHashes).toEqual([sha256Hex(OTHER)]);
  });

  it.each([
    ['a key of 15 characters', ['--api-key', 'k'.repeat(15)], {}, /^apiKeys: --api-key must be keys of at least 16/],
    ['an empty --api-key', ['--api-key='], {}, /^apiKeys: --api-key must be keys/],
    [
      'a short key in BLOCKCAST_API_KEYS',
      [],
      { BLOCKCAST_API_KEYS: `${KEY},tiny-key` },
      /^apiKeys: BLOCKCAST_API_KEYS/,
    ],
  ])('refuses %s with BAD_CONFIG', (_, argv, env, message) => {
    const error = configError(argv, env);
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(message);
  });

  it('never quotes a key in an error', () => {
    const short = 'short-secret';
    expect(configError(['--api-key', short]).message).not.toContain(short);
    const mixed = configError([], { BLOCKCAST_API_KEYS: `${KEY},${short}` }).message;
    expect(mixed).not.toContain(short);
    expect(mixed).not.toContain(KEY);
    expect(configError(['--api-key', KEY, '--nope']).message).not.toContain(KEY);
    expect(configError(['--api-key', KEY, '--port', '99999']).message).not.toContain(KEY);
  });

  it('reads repeated and comma-separated allowed origins', () => {
    expect(
      loadConfig(['--allowed-origin', 'https://app.example,https://*.app.example', '--allowed-origin', '*'], {})
        .allowedOrigins,
    ).toEqual(['https://app.example', 'https://*.app.example', '*']);
    expect(loadConfig([], { BLOCKCAST_ALLOWED_ORIGINS: 'http://localhost:3000' }).allowedOrigins).toEqual([
      'http://localhost:3000',
    ]);
  });

  it.each([
    ['with a path', 'https://app.example/'],
    ['without a scheme', 'app.example'],
    ['with an ftp scheme', 'ftp://app.example'],
  ])('refuses an allowed origin %s, quoting it', (_, origin) => {
    const error = configError(['--allowed-origin', `https://ok.example,${origin}`]);
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(/^allowedOrigins: --allowed-origin must be origins/);
    expect(error.message).toContain(JSON.stringify(origin));
  });

  it('refuses an empty allowed origin', () => {
    expect(configError([], { BLOCKCAST_ALLOWED_ORIGINS: ' , ' }).message).toMatch(
      /^allowedOrigins: BLOCKCAST_ALLOWED_ORIGINS must be origins/,
    );
  });

  it('refuses --tls-cert without --tls-key, and the other way round', () => {
    expect(configError(['--tls-cert', 'cert.pem']).message).toMatch(/^tlsCert: --tls-cert and --tls-key go together/);
    expect(configError([], { BLOCKCAST_TLS_KEY: 'key.pem' }).message).toMatch(/^tlsCert: /);
  });

  it('accepts --tls-cert with --tls-key', () => {
    expect(loadConfig(['--tls-cert', 'cert.pem', '--tls-key', 'key.pem'], {})).toMatchObject({
      tlsCert: 'cert.pem',
      tlsKey: 'key.pem',
    });
  });

  it('listens on loopback only without keys or tokens', () => {
    expect(loadConfig([], {}).host).toBe('127.0.0.1');
    expect(loadConfig(['--allowed-origin', 'https://app.example'], {}).host).toBe('127.0.0.1');
  });

  it.each([
    ['--api-key', ['--api-key', KEY], {}],
    ['BLOCKCAST_API_KEYS', [], { BLOCKCAST_API_KEYS: KEY }],
    ['--keys-file', ['--keys-file', 'keys.json'], {}],
    ['--jwt-secret', ['--jwt-secret', 'a-secret-of-at-least-32-bytes-long!!'], {}],
    ['--jwt-public-key', ['--jwt-public-key', 'jwt.pem'], {}],
  ])('listens on every interface with %s when no host is given', (_, argv, env) => {
    expect(loadConfig(argv, env).host).toBe('0.0.0.0');
  });

  it('keeps a host given by flag or environment, with or without keys', () => {
    expect(loadConfig(['--api-key', KEY, '--host', '127.0.0.1'], {}).host).toBe('127.0.0.1');
    expect(loadConfig(['--keys-file', 'keys.json'], { BLOCKCAST_HOST: '10.0.0.1' }).host).toBe('10.0.0.1');
    expect(loadConfig(['--host', '0.0.0.0'], {}).host).toBe('0.0.0.0');
  });
});

describe('loadConfig: scale out', () => {
  it('reads the wallet options (--traces, --token-metadata, --max-tokens, --drop-after-sec), and refuses other words', () => {
    expect(DEFAULTS).toMatchObject({ traces: 'auto', tokenMetadata: 'on', maxTokens: 10_000, dropAfterSec: 600 });
    const config = loadConfig(['--traces', 'off', '--max-tokens', '50', '--drop-after-sec', '5'], {
      BLOCKCAST_TOKEN_METADATA: 'off',
    });
    expect(config).toMatchObject({ traces: 'off', tokenMetadata: 'off', maxTokens: 50, dropAfterSec: 5 });
    expect(() => loadConfig(['--traces', 'on'], {})).toThrow(/traces: --traces must be one of auto, off, got "on"/);
    expect(() => loadConfig(['--token-metadata', 'yes'], {})).toThrow(
      /tokenMetadata: --token-metadata must be one of on, off, got "yes"/,
    );
    expect(() => loadConfig(['--drop-after-sec', '0'], {})).toThrow(/drop-after-sec/);
  });

  it('reads --redis, --role, --workers and --lease-ms, and their variables', () => {
    const config = loadConfig(['--redis', 'redis://127.0.0.1:6390', '--role', 'ingest', '--lease-ms', '1500'], {
      BLOCKCAST_WORKERS: '1',
    });
    expect(config).toMatchObject({ redis: 'redis://127.0.0.1:6390', role: 'ingest', workers: 1, leaseMs: 1500 });
    expect(loadConfig(['--workers', '4'], { BLOCKCAST_REDIS: 'redis://r:6379' }).workers).toBe(4);
    expect(DEFAULTS).toMatchObject({ redis: '', role: 'all', workers: 1 });
  });

  it('refuses what cannot work, saying what to give', () => {
    expect(() => loadConfig(['--role', 'gateway'], {})).toThrow(
      /--role gateway needs the chain log shared through Redis: give --redis/,
    );
    expect(() => loadConfig(['--workers', '2'], {})).toThrow(/--workers 2 needs the chain log shared through Redis/);
    expect(() => loadConfig(['--role', 'boss'], {})).toThrow(/role: --role must be one of all, ingest, gateway/);
    expect(() => loadConfig(['--redis', 'http://x'], {})).toThrow(
      /redis: --redis must be a URL like redis:\/\/HOST:PORT/,
    );
    // The value is not repeated: it may hold a password.
    expect(() => loadConfig(['--redis', 'secret-password'], {})).toThrow(/^(?!.*secret-password)/s);
    expect(() => loadConfig(['--redis', 'redis://r:1', '--workers', '2', '--port', '0'], {})).toThrow(/not 0/);
    expect(() => loadConfig(['--redis', 'redis://r:1', '--role', 'ingest', '--workers', '2'], {})).toThrow(
      /--role ingest runs none/,
    );
    expect(() => loadConfig(['--redis', 'redis://r:1', '--role', 'gateway', '--rpc', 'http://n'], {})).toThrow(
      /--chain ID=URL/,
    );
  });
});

describe('usage', () => {
  it('lists every flag with its environment variable', () => {
    const text = usage();
    for (const option of OPTIONS) {
      expect(text).toContain(option.flag);
      expect(text).toContain(option.env);
    }
  });
});

describe('loadConfig: a configuration file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'blockcast-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it('loads the annotated example of the repository', () => {
    const example = fileURLToPath(new URL('../blockcast.example.yaml', import.meta.url));
    expect(loadConfig(['--config', example], {})).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      maxAddresses: 5000,
      maxSubscriptions: 50,
      maxRequestsPerSecond: 50,
      maxConnectionsPerIp: 200,
      maxWatchedAddresses: 2_000_000,
      devnetBlockTimeSec: 2,
      chains: [],
    });
  });

  it('reads JSON and YAML, chains as a map or a list, lists of strings, and paths relative to the file', () => {
    const yaml = write(
      'a.yaml',
      'chains:\n  1: [https://a.example, wss://b.example]\n  10: https://c.example\nallowedOrigins: [https://w.example]\nkeysFile: keys.json\nport: 9000\n',
    );
    const fromYaml = loadConfig(['--config', yaml], {});
    expect(fromYaml.chains).toEqual([
      { chainId: 1, rpc: ['https://a.example', 'wss://b.example'] },
      { chainId: 10, rpc: ['https://c.example'] },
    ]);
    expect(fromYaml.allowedOrigins).toEqual(['https://w.example']);
    expect(fromYaml.keysFile).toBe(join(dir, 'keys.json'));
    // With a keys file and no host, every interface.
    expect(fromYaml.host).toBe('0.0.0.0');
    const json = write(
      'b.json',
      JSON.stringify({ rpc: ['http://n.example:8545'], maxAddresses: 7, apiKeys: ['k'.repeat(20)] }),
    );
    const fromJson = loadConfig([`--config=${json}`], {});
    expect(fromJson).toMatchObject({ rpc: ['http://n.example:8545'], maxAddresses: 7 });
    expect(fromJson.apiKeyHashes).toHaveLength(1);
  });

  it('lets the environment and flags override the file', () => {
    const file = write('c.yaml', 'port: 9000\nmaxAddresses: 7\nmaxSubscriptions: 3\n');
    const config = loadConfig(['--config', file, '--port', '9100'], {
      BLOCKCAST_MAX_ADDRESSES: '8',
    });
    expect(config).toMatchObject({ port: 9100, maxAddresses: 8, maxSubscriptions: 3 });
    expect(loadConfig([], { BLOCKCAST_CONFIG: file })).toMatchObject({ port: 9000 });
  });

  it.each([
    ['an unknown setting', 'bad1.yaml', 'prot: 80\n', /^prot: .*bad1\.yaml: unknown setting \(known: rpc, chains/],
    [
      'a value out of range',
      'bad2.yaml',
      'port: 70000\n',
      /^port: .*bad2\.yaml: port must be an integer from 0 to 65535, got "70000"/,
    ],
    [
      'a wrong type',
      'bad3.yaml',
      'maxAddresses: [1]\n',
      /^maxAddresses: .*bad3\.yaml: maxAddresses must be an integer/,
    ],
    ['a bad URL', 'bad4.yaml', 'rpc: [localhost]\n', /^rpc: not a URL: "localhost"/],
    ['not a map', 'bad5.yaml', '- port\n', /^config: .*bad5\.yaml must hold a map of settings/],
    ['not YAML', 'bad6.yaml', 'port: [\n', /^config: .*bad6\.yaml cannot be read/],
    ['not JSON', 'bad7.json', '{"port":', /^config: .*bad7\.json cannot be read/],
  ])('refuses %s with BAD_CONFIG naming the setting and the file', (_, name, text, message) => {
    const error = configError(['--config', write(name, text)]);
    expect(error.code).toBe('BAD_CONFIG');
    expect(error.message).toMatch(message);
  });

  it('refuses a file it cannot read, and --config without a file', () => {
    expect(configError(['--config', join(dir, 'missing.yaml')]).message).toMatch(
      /^config: cannot read .*missing\.yaml/,
    );
    expect(configError(['--config']).message).toMatch(/^config: --config needs a file/);
  });
});
