import { type Anvil, type StartAnvilOptions, startAnvil } from '../../src/devnet/startAnvil.ts';
import { TestChain } from './chain.ts';
import { type GatewayProcess, startGateway } from './gateway.ts';

/** A real anvil node, the real gateway following it, and test access to the node. */
export interface Stack {
  readonly anvil: Anvil;
  readonly gateway: GatewayProcess;
  readonly chain: TestChain;
  /** Stops the gateway and the node. */
  readonly close: () => Promise<void>;
}

/**
 * Starts anvil with `node` options and a gateway following it over `transport` (polling every
 * 50 ms), with any `args` more.
 */
export async function startStack(
  options: { node?: StartAnvilOptions; transport?: 'http' | 'ws'; args?: readonly string[] } = {},
): Promise<Stack> {
  const anvil = await startAnvil(options.node ?? { noMining: true });
  const rpc = options.transport === 'ws' ? anvil.wsUrl : anvil.httpUrl;
  let gateway: GatewayProcess;
  try {
    gateway = await startGateway(['--rpc', rpc, '--poll-interval-ms', '50', ...(options.args ?? [])]);
  } catch (error) {
    await anvil.close();
    throw error;
  }
  const chain = new TestChain(anvil.httpUrl);
  return {
    anvil,
    gateway,
    chain,
    close: async () => {
      chain.close();
      await gateway.stop();
      await anvil.close();
    },
  };
}
