import { Contract, ContractFactory, HDNodeWallet, isError, JsonRpcProvider, NonceManager, type Wallet } from 'ethers';
import { TEST_TOKEN_ABI, TEST_TOKEN_BYTECODE } from './testToken.ts';

/** The mnemonic anvil derives its dev accounts from (public, for local chains only). */
export const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk';

/** Anvil's first `count` dev accounts as wallets connected to `provider`. */
export function devWallets(provider: JsonRpcProvider, count = 10): Wallet[] {
  const root = HDNodeWallet.fromPhrase(ANVIL_MNEMONIC, undefined, "m/44'/60'/0'/0");
  return Array.from({ length: count }, (_, i) => root.deriveChild(i).connect(provider) as unknown as Wallet);
}

/** Options of {@link startTraffic}. */
export interface StartTrafficOptions {
  readonly rpcUrl: string;
  /** Milliseconds between two transactions. @default 400 */
  readonly intervalMs?: number;
  readonly onError?: (error: unknown) => void;
}

const WALLETS = 10;
const TOKENS_EACH = 10n ** 24n;

/**
 * Sends traffic between anvil's dev accounts at a steady pace, so a new user of the embedded
 * devnet sees activity at once: ETH transfers, and transfers of an ERC-20 it deploys (every
 * account gets a balance first). Returns a function that stops it.
 */
export function startTraffic(options: StartTrafficOptions): () => void {
  const provider = new JsonRpcProvider(options.rpcUrl, undefined, { staticNetwork: true, batchMaxCount: 1 });
  // Nonces are counted locally: a wallet may send again before its last transaction is mined.
  const senders = devWallets(provider, WALLETS).map((wallet) => new NonceManager(wallet));
  let stopped = false;
  let round = 0;
  let timer: NodeJS.Timeout | undefined;
  let token: Contract | undefined;
  // Errors caused by stop() are no fault: requests in flight are cancelled when the provider is
  // destroyed, and ethers may surface that cancellation after stop() returned.
  const report = (error: unknown): void => {
    if (stopped || provider.destroyed) return;
    if (isError(error, 'UNSUPPORTED_OPERATION') && error.message.startsWith('provider destroyed')) return;
    options.onError?.(error);
  };

  const deployToken = async (): Promise<void> => {
    const deployer = senders[0] as NonceManager;
    const factory = new ContractFactory(TEST_TOKEN_ABI, TEST_TOKEN_BYTECODE, deployer);
    const deployed = await factory.deploy(TOKENS_EACH);
    await deployed.waitForDeployment();
    const address = await deployed.getAddress();
    const mints = [];
    for (const sender of senders.slice(1)) {
      mints.push(
        await new Contract(address, TEST_TOKEN_ABI, deployer).getFunction('mint')(
          await sender.getAddress(),
          TOKENS_EACH,
        ),
      );
    }
    await Promise.all(mints.map((tx) => tx.wait()));
    if (!stopped) token = new Contract(address, TEST_TOKEN_ABI, provider);
  };

  const tick = async (): Promise<void> => {
    const from = senders[round % WALLETS] as NonceManager;
    // Never the sender itself: 7r + 3 and r differ mod 10 for every r.
    const to = await (senders[(round * 7 + 3) % WALLETS] as NonceManager).getAddress();
    round++;
    try {
      if (token !== undefined && round % 2 === 0) {
        await (token.connect(from) as Contract).getFunction('transfer')(to, BigInt(1 + (round % 1000)) * 10n ** 18n);
      } else {
        await from.sendTransaction({ to, value: BigInt(1 + (round % 1000)) * 10n ** 15n });
      }
    } catch (error) {
      if (stopped) return;
      report(error);
      // A failed send leaves the local count ahead of the node: start again from the node's.
      from.reset();
    }
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => void tick().finally(schedule), options.intervalMs ?? 400);
  };
  deployToken().catch(report);
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
    provider.destroy();
  };
}
