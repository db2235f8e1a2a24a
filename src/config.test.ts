import { describe, expect, it } from 'vitest';
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
    expect(DEFAULTS).toMatchObject({ rpc: [], host: '0.0.0.0', port: 8080, maxMessageBytes: 1_048_576 });
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

describe('usage', () => {
  it('lists every flag with its environment variable', () => {
    const text = usage();
    for (const option of OPTIONS) {
      expect(text).toContain(option.flag);
      expect(text).toContain(option.env);
    }
  });
});
