import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Interface, type InterfaceAbi, type Log, type TransactionReceipt } from 'ethers';
import solc from 'solc';
import type { TestChain } from './chain.ts';

const CONTRACTS_DIR = fileURLToPath(new URL('../../contracts/', import.meta.url));

/** A compiled contract: its ABI as an ethers Interface, and its creation bytecode. */
export interface Artifact {
  readonly iface: Interface;
  readonly bytecode: string;
}

/** The names of the contracts in `contracts/`. */
export type ContractName =
  | 'TestERC20'
  | 'TestERC721'
  | 'TestERC1155'
  | 'LogEmitter'
  | 'Bytes32Token'
  | 'RevertingToken'
  | 'Splitter'
  | 'SplitterChild'
  | 'Rejector';

let compiled: Map<string, Artifact> | undefined;

/**
 * Compiles every `contracts/*.sol` with solc-js (once per test process; about 1.5 s) and
 * returns the artifact of `name`. Compiler errors fail the test with solc's messages.
 */
export function artifact(name: ContractName): Artifact {
  if (compiled === undefined) {
    const sources: Record<string, { content: string }> = {};
    for (const file of readdirSync(CONTRACTS_DIR).filter((f) => f.endsWith('.sol'))) {
      sources[file] = { content: readFileSync(`${CONTRACTS_DIR}${file}`, 'utf8') };
    }
    const input = {
      language: 'Solidity',
      sources,
      settings: {
        optimizer: { enabled: true, runs: 200 },
        evmVersion: 'cancun',
        outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
      },
    };
    const output = JSON.parse(solc.compile(JSON.stringify(input))) as {
      errors?: Array<{ severity: string; formattedMessage: string }>;
      contracts?: Record<string, Record<string, { abi: InterfaceAbi; evm: { bytecode: { object: string } } }>>;
    };
    const errors = (output.errors ?? []).filter((e) => e.severity === 'error');
    if (errors.length > 0) throw new Error(`solc: ${errors.map((e) => e.formattedMessage).join('\n')}`);
    compiled = new Map();
    for (const contracts of Object.values(output.contracts ?? {})) {
      for (const [contractName, c] of Object.entries(contracts)) {
        compiled.set(contractName, { iface: new Interface(c.abi), bytecode: `0x${c.evm.bytecode.object}` });
      }
    }
  }
  const found = compiled.get(name);
  if (found === undefined) throw new Error(`no contract ${name} in contracts/`);
  return found;
}

/** Sends the deployment of `name` from dev wallet `from`; returns the transaction hash (mine it). */
export function deploy(chain: TestChain, from: number, name: ContractName, args: unknown[] = []): Promise<string> {
  const { iface, bytecode } = artifact(name);
  return chain.send(from, { data: `${bytecode}${iface.encodeDeploy(args).slice(2)}` });
}

/** Sends a call of `method` on a deployed contract from dev wallet `from`; returns the transaction hash. */
export function call(
  chain: TestChain,
  from: number,
  name: ContractName,
  address: string,
  method: string,
  args: unknown[],
): Promise<string> {
  return chain.send(from, { to: address, data: artifact(name).iface.encodeFunctionData(method, args) });
}

/** The address a mined deployment created. */
export async function deployedAddress(chain: TestChain, hash: string): Promise<string> {
  const receipt = await chain.receipt(hash);
  if (receipt.contractAddress === null) throw new Error(`${hash} created no contract`);
  return receipt.contractAddress.toLowerCase();
}

/** An activity event as PROTOCOL.md writes it. */
export type WireEvent = Record<string, unknown>;

function hex(n: bigint): string {
  return `0x${n.toString(16)}`;
}

const TOKEN_EVENTS = new Interface([
  'event Transfer(address indexed from, address indexed to, uint256 value)',
  'event TransferSingle(address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value)',
  'event TransferBatch(address indexed operator, address indexed from, address indexed to, uint256[] ids, uint256[] values)',
]);
const ERC721_TRANSFER = new Interface([
  'event Transfer(address indexed from, address indexed to, uint256 indexed tokenId)',
]);

/**
 * The token events of one log as ethers decodes it (with the ABIs of the standards), in the
 * wire form of PROTOCOL.md; `[]` for any other log. The reference the gateway is checked against.
 */
export function tokenEventsOf(log: Log): WireEvent[] {
  try {
    return decodeTokenLog(log);
  } catch {
    return []; // ethers cannot decode it with the standard ABIs: not a standard token event
  }
}

function decodeTokenLog(log: Log): WireEvent[] {
  const base = { txHash: log.transactionHash, logIndex: log.index, token: log.address.toLowerCase() };
  const id = `${log.transactionHash}:${log.index}`;
  const lower = (a: unknown): string => String(a).toLowerCase();
  if (log.topics.length === 4) {
    const erc721 = ERC721_TRANSFER.parseLog(log);
    if (erc721 !== null) {
      const [from, to, tokenId] = erc721.args;
      return [{ kind: 'erc721', id, ...base, from: lower(from), to: lower(to), tokenId: hex(tokenId as bigint) }];
    }
  }
  const parsed = TOKEN_EVENTS.parseLog(log);
  if (parsed === null) return [];
  if (parsed.name === 'Transfer') {
    const [from, to, value] = parsed.args;
    return [{ kind: 'erc20', id, ...base, from: lower(from), to: lower(to), value: hex(value as bigint) }];
  }
  const [operator, from, to] = [lower(parsed.args[0]), lower(parsed.args[1]), lower(parsed.args[2])];
  if (parsed.name === 'TransferSingle') {
    return [
      {
        kind: 'erc1155',
        id,
        ...base,
        operator,
        from,
        to,
        tokenId: hex(parsed.args[3] as bigint),
        value: hex(parsed.args[4] as bigint),
      },
    ];
  }
  const ids = parsed.args[3] as bigint[];
  const values = parsed.args[4] as bigint[];
  return ids.map((tokenId, i) => ({
    kind: 'erc1155',
    id: `${id}:${i}`,
    ...base,
    operator,
    from,
    to,
    tokenId: hex(tokenId),
    value: hex(values[i] as bigint),
  }));
}

/** The `tx` event of a mined transaction, in wire form, from its receipt and the node's transaction. */
export function txEventOf(receipt: TransactionReceipt, tx: { value: string; nonce: string }): WireEvent {
  return {
    kind: 'tx',
    id: receipt.hash,
    txHash: receipt.hash,
    txIndex: receipt.index,
    from: receipt.from.toLowerCase(),
    to: receipt.to === null ? null : receipt.to.toLowerCase(),
    value: hex(BigInt(tx.value)),
    nonce: Number(tx.nonce),
    status: receipt.status,
    ...(receipt.contractAddress === null ? {} : { contractAddress: receipt.contractAddress.toLowerCase() }),
    // The fee as the node's receipt gives it (ethers' own reading, not the gateway's).
    gasUsed: hex(receipt.gasUsed),
    effectiveGasPrice: hex(receipt.gasPrice),
    fee: hex(receipt.fee),
    ...(receipt.blobGasUsed == null || receipt.blobGasPrice == null
      ? {}
      : { blobFee: hex(receipt.blobGasUsed * receipt.blobGasPrice) }),
  };
}

/**
 * What a watcher of `addresses` must receive for a mined block, computed from the node's
 * receipts with ethers (not with the gateway's code): each transaction whose from, to or
 * created contract is watched, then each token event of its logs whose from or to is watched.
 */
export async function expectedActivity(
  chain: TestChain,
  number: number,
  addresses: readonly string[],
  kinds: readonly string[] = ['tx', 'erc20', 'erc721', 'erc1155'],
): Promise<WireEvent[]> {
  const watched = new Set(addresses.map((a) => a.toLowerCase()));
  const block = await chain.block(number);
  const events: WireEvent[] = [];
  for (const tx of block.transactions) {
    const receipt = await chain.receipt(tx.hash);
    const txEvent = txEventOf(receipt, tx);
    const txAddresses = [txEvent['from'], txEvent['to'], txEvent['contractAddress']];
    if (kinds.includes('tx') && txAddresses.some((a) => typeof a === 'string' && watched.has(a))) events.push(txEvent);
    for (const log of receipt.logs) {
      for (const event of tokenEventsOf(log)) {
        if (!kinds.includes(event['kind'] as string)) continue;
        if (watched.has(event['from'] as string) || watched.has(event['to'] as string)) events.push(event);
      }
    }
  }
  return events;
}
