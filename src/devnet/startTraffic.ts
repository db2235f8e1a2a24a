import { HDNodeWallet, JsonRpcProvider, type Wallet } from 'ethers';

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

/**
 * Sends small ETH transfers between anvil's dev accounts at a steady pace, so a new user of the
 * embedded devnet sees activity at once. Returns a function that stops it.
 */
export function startTraffic(options: StartTrafficOptions): () => void {
  const provider = new JsonRpcProvider(options.rpcUrl, undefined, { staticNetwork: true, batchMaxCount: 1 });
  const wallets = devWallets(provider, 10);
  let stopped = false;
  let round = 0;
  let timer: NodeJS.Timeout | undefined;

  const tick = async (): Promise<void> => {
    const from = wallets[round % wallets.length] as Wallet;
    const to = wallets[(round * 7 + 3) % wallets.length] as Wallet;
    round++;
    try {
      await from.sendTransaction({ to: to.address, value: BigInt(1 + (round % 1000)) * 10n ** 15n });
    } catch (error) {
      options.onError?.(error);
    }
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => void tick().finally(schedule), options.intervalMs ?? 400);
  };
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
    provider.destroy();
  };
}
