import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { devnetTokenModule } from '../scripts/buildDevnetToken.ts';

describe('the devnet token artifact', () => {
  it('is what contracts/TestERC20.sol compiles to', () => {
    const committed = readFileSync(fileURLToPath(new URL('../src/devnet/testToken.ts', import.meta.url)), 'utf8');
    expect(committed).toBe(devnetTokenModule());
  });
});
