import { Logger } from '@nestjs/common';
import { Cluster, type Redis } from 'ioredis';
import { WorkflowConfigurationError } from '../errors/workflow.errors.js';
import type { KeySpace } from './keys.js';
import { libraryHash, loadLuaLibrary, type LuaLibrary } from './lua-library.js';
import type { RedisClient } from './redis-connections.js';

const VERSION_FUNCTION = 'wf1_version';

/**
 * What one node holds, as this process judges it: `own` (this package's code), `newer` (a newer build
 * whose code a process of this app recorded as its own, or listed in trustedLibraryHashes), `older` or
 * `missing` (this process loads its own), `untrusted` (anything else: `problem` says what to do).
 */
export interface NodeLibraryState {
  node: string;
  build?: number;
  hash?: string;
  verdict: 'own' | 'newer' | 'older' | 'missing' | 'untrusted';
  problem?: string;
}

export interface FunctionLoaderOptions {
  /** sha256 hashes of newer releases' libraries to accept although no process of this app recorded them. */
  trustedHashes?: readonly string[];
  /** The library this process loads; this package's own by default. */
  library?: LuaLibrary;
}

/**
 * Loads the Function library into Redis when the loaded build is older than this package's (never
 * downgrades), on every primary of a cluster, and again whenever a node answers 'Function not found'
 * (a flushed or restarted server).
 *
 * A library is identified by its build and the sha256 of its code as Redis holds it (FUNCTION LIST
 * WITHCODE: not a hash the library reports about itself, which a forged one could fake). The same
 * build with other code, or a newer build whose code this process cannot vouch for, is refused: init
 * fails and health is down, with what to do. A process cannot know a newer release's code in advance, so
 * every process records its own library's hash in the app's keyspace (`KeySpace.libraryHashes`) before it
 * loads it: during a rolling deploy the old processes find the new release's hash there and go on. Code
 * loaded by someone who cannot write this app's keys is never in that record.
 */
export class FunctionLoader {
  private readonly logger = new Logger('WorkflowFunctions');
  readonly library: LuaLibrary;
  private readonly trustedHashes: ReadonlySet<string>;
  private reloading?: Promise<void>;
  private reportedNewer = false;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: KeySpace,
    options: FunctionLoaderOptions = {},
  ) {
    this.library = options.library ?? loadLuaLibrary();
    this.trustedHashes = new Set(options.trustedHashes ?? []);
  }

  async ensureLoaded(): Promise<void> {
    const nodes = this.nodes();
    await Promise.all(nodes.map((node) => assertRedisVersion(node)));
    // Recorded before it is loaded, so that older processes checking their health meanwhile find it.
    await this.client.hset(this.keys.libraryHashes(), this.library.hash, String(this.library.build));
    const states = await Promise.all(nodes.map((node) => this.ensureLoadedOn(node)));
    const untrusted = states.filter((state) => state.verdict === 'untrusted');
    if (untrusted.length > 0) throw new WorkflowConfigurationError(untrusted.map((state) => state.problem).join(' '));
    const newer = states.find((state) => state.verdict === 'newer');
    if (newer && !this.reportedNewer) {
      this.reportedNewer = true;
      this.logger.log(`Using the Redis Function library ${this.library.name} build ${newer.build} of a newer release (this package's build is ${this.library.build})`);
    }
  }

  /** Called when a call answered 'Function not found': loads again, once for concurrent callers. */
  reload(): Promise<void> {
    this.reloading ??= this.ensureLoaded().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  /** What each node (each primary of a cluster) holds, judged as ensureLoaded judges it. */
  inspect(): Promise<NodeLibraryState[]> {
    return Promise.all(this.nodes().map((node) => this.inspectNode(node)));
  }

  private nodes(): Redis[] {
    return this.client instanceof Cluster ? this.client.nodes('master') : [this.client as Redis];
  }

  private async ensureLoadedOn(node: Redis): Promise<NodeLibraryState> {
    const state = await this.inspectNode(node);
    if (state.verdict !== 'missing' && state.verdict !== 'older') return state;
    try {
      await node.call('FUNCTION', 'LOAD', 'REPLACE', this.library.code);
    } catch (error) {
      if (!(error instanceof Error) || !/NOPERM/.test(error.message)) throw error;
      throw new WorkflowConfigurationError(
        `The Redis user of this app may not FUNCTION LOAD (${error.message}), and ${state.build === undefined ? 'no' : `only an older (build ${state.build})`} Function library ${this.library.name} is loaded on ${state.node}. ` +
          `An admin loads it: start one process of this release with an admin connection (its start loads build ${this.library.build}), then this app.`,
      );
    }
    this.logger.log(
      `Loaded Redis Function library ${this.library.name} build ${this.library.build}` + (state.build === undefined ? '' : ` (replacing build ${state.build})`),
    );
    return { node: state.node, build: this.library.build, hash: this.library.hash, verdict: 'own' };
  }

  private async inspectNode(node: Redis): Promise<NodeLibraryState> {
    const at = `${node.options.host}:${node.options.port}`;
    const [build, code] = await Promise.all([loadedBuild(node), loadedCode(node, this.library.name)]);
    if (code === undefined) return { node: at, verdict: 'missing' };
    const hash = libraryHash(code);
    // A library without a readable build (no wf1_version) is treated as the oldest: replaced.
    if (build === undefined || !Number.isFinite(build) || build < this.library.build) return { node: at, build, hash, verdict: 'older' };
    if (hash === this.library.hash) return { node: at, build, hash, verdict: 'own' };
    if (build > this.library.build && (this.trustedHashes.has(hash) || (await this.recordedByThisApp(hash)))) return { node: at, build, hash, verdict: 'newer' };
    return { node: at, build, hash, verdict: 'untrusted', problem: this.untrustedProblem(at, build, hash) };
  }

  private async recordedByThisApp(hash: string): Promise<boolean> {
    return (await this.client.hexists(this.keys.libraryHashes(), hash)) === 1;
  }

  private untrustedProblem(at: string, build: number, hash: string): string {
    const { name } = this.library;
    const what =
      build === this.library.build
        ? `has this package's build ${build} but other code (sha256 ${hash}, expected ${this.library.hash}): it was modified or loaded by someone else.`
        : `is build ${build} (sha256 ${hash}), newer than this package's build ${this.library.build}, and no process of this app (prefix '${this.keys.prefix}') recorded that code as its own, so this app cannot tell it from a foreign library. If a newer release of nestjs-redis-workflows loaded it (another app on this server, say), upgrade this app or add '${hash}' to the module's trustedLibraryHashes option.`;
    return (
      `The Redis Function library ${name} on ${at} ${what} This app does not run on code it cannot verify. ` +
      `Whoever may FUNCTION LOAD on this server controls every app on it: find who loaded it, allow FUNCTION LOAD to an admin user only, ` +
      `then delete it (FUNCTION DELETE ${name}) and restart this app, which loads its own.`
    );
  }
}

async function loadedBuild(node: Redis): Promise<number | undefined> {
  try {
    return Number(await node.call('FCALL_RO', VERSION_FUNCTION, 0));
  } catch (error) {
    if (isFunctionNotFound(error)) return undefined;
    throw error;
  }
}

/** The code of the library `name` as the node holds it, or undefined when it has none. */
async function loadedCode(node: Redis, name: string): Promise<string | undefined> {
  const libraries = (await node.call('FUNCTION', 'LIST', 'LIBRARYNAME', name, 'WITHCODE')) as unknown[][];
  for (const entry of libraries) {
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1]);
    // LIBRARYNAME is a pattern: only the library of exactly this name counts.
    if (fields.get('library_name') === name) return String(fields.get('library_code'));
  }
  return undefined;
}

export function isFunctionNotFound(error: unknown): boolean {
  return error instanceof Error && /Function not found|No matching script/i.test(error.message);
}

async function assertRedisVersion(node: Redis): Promise<void> {
  const info = String(await node.call('INFO', 'server'));
  const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? '0';
  const [major] = version.split('.').map(Number);
  if (major < 7) {
    throw new WorkflowConfigurationError(
      `Redis ${version} at ${node.options.host}:${node.options.port} is too old: nestjs-redis-workflows needs Redis 7.0 or newer (Redis Functions). Upgrade the server.`,
    );
  }
}
