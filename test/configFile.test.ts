import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TestClient } from './helpers/client.ts';
import { runGatewayToExit, startGateway } from './helpers/gateway.ts';

// The gateway started with the repository's annotated example configuration (flags still win),
// and with a bad file.

describe('configuration file', () => {
  it('starts with the example file and serves what it sets', async () => {
    // The test's own --host and --port (a free port) override the file's, as flags do.
    const gateway = await startGateway(['--config', 'blockcast.example.yaml']);
    try {
      expect(gateway.output()).toMatch(/devnet: anvil at http:\/\/127\.0\.0\.1:\d+ \(block time 2 s\)/);
      const client = await TestClient.connect(gateway.url, 'json');
      expect(client.messages[0]).toMatchObject({
        type: 'welcome',
        limits: {
          maxAddresses: 5000,
          maxSubscriptions: 50,
          maxRequestsPerSecond: 50,
          maxConnectionsPerIp: 200,
          maxConfirmations: 64,
        },
      });
      client.close();
    } finally {
      await gateway.stop();
    }
  });

  it('exits non-zero on a bad file, naming the setting and the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'blockcast-config-'));
    try {
      const file = join(dir, 'blockcast.yaml');
      writeFileSync(file, 'port: 8080\nmaxSubscriptions: lots\n');
      const result = await runGatewayToExit(['--config', file]);
      expect(result.code).toBe(1);
      expect(result.output).toContain(`BAD_CONFIG: maxSubscriptions: ${file}: maxSubscriptions must be an integer`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
