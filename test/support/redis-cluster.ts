/**
 * Test harness: a private Redis Cluster made of redis-server processes on free
 * ports, created with `redis-cli --cluster create`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { rawCommand, sleep, startRedis, type RedisServerHandle } from './redis-server.js';

const execFileP = promisify(execFile);

export interface StartClusterOptions {
  primaries?: number;
  replicasPerPrimary?: 0 | 1;
  /** Extra redis-server args for every node. */
  args?: string[];
  readyTimeoutMs?: number;
}

export interface ClusterNodeAddr {
  host: string;
  port: number;
}

export interface RedisClusterHandle {
  /** All nodes (primaries and replicas), in creation order. */
  readonly nodes: ClusterNodeAddr[];
  /** Nodes currently acting as primaries (asks the cluster). */
  primaries(): Promise<ClusterNodeAddr[]>;
  /** SIGKILL one node (waits for exit). */
  kill(port: number): Promise<void>;
  /** Restart a node on the same port/dir (it rejoins via its nodes.conf). */
  restart(port: number): Promise<void>;
  /** Stop all nodes and remove the temp dirs. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

async function clusterInfoOk(port: number): Promise<boolean> {
  try {
    const info = await rawCommand(port, 'CLUSTER INFO', 1000);
    return /cluster_state:ok/.test(info);
  } catch {
    return false;
  }
}

async function waitAllOk(ports: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const oks = await Promise.all(ports.map(clusterInfoOk));
    if (oks.every(Boolean)) return;
    await sleep(100);
  }
  throw new Error(`cluster on ports ${ports.join(',')} not ok after ${timeoutMs}ms`);
}

/** A replica that never finished its first sync cannot be promoted: wait until every link is up. */
async function waitReplicasSynced(ports: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const infos = await Promise.all(ports.map((port) => rawCommand(port, 'INFO replication', 1000).catch(() => '')));
    const replicas = infos.filter((info) => /role:slave/.test(info));
    if (replicas.length > 0 && replicas.every((info) => /master_link_status:up/.test(info))) return;
    await sleep(100);
  }
  throw new Error(`cluster replicas on ports ${ports.join(',')} not in sync after ${timeoutMs}ms`);
}

export async function startCluster(opts: StartClusterOptions = {}): Promise<RedisClusterHandle> {
  const primaries = opts.primaries ?? 3;
  const replicas = opts.replicasPerPrimary ?? 0;
  const total = primaries * (1 + replicas);
  const timeout = opts.readyTimeoutMs ?? 20000;
  if (primaries < 3) throw new Error('redis-cli --cluster create needs at least 3 primaries');

  const root = await mkdtemp(path.join(os.tmpdir(), 'nrw-cluster-'));
  const servers = new Map<number, RedisServerHandle>();
  try {
    for (let i = 0; i < total; i++) {
      const dir = await mkdtemp(path.join(root, `n${i}-`));
      const s = await startRedis({
        dir,
        args: [
          '--cluster-enabled', 'yes',
          '--cluster-config-file', 'nodes.conf',
          '--cluster-node-timeout', '2000',
          // a test's replica may be promoted however long it was disconnected
          '--cluster-replica-validity-factor', '0',
          ...(opts.args ?? []),
        ],
      });
      servers.set(s.port, s);
    }
    const ports = [...servers.keys()];
    await execFileP(
      'redis-cli',
      [
        '--cluster', 'create',
        ...ports.map((p) => `${HOST}:${p}`),
        '--cluster-replicas', String(replicas),
        '--cluster-yes',
      ],
      { timeout },
    );
    await waitAllOk(ports, timeout);
    if (replicas > 0) await waitReplicasSynced(ports, timeout);
  } catch (e) {
    await Promise.all([...servers.values()].map((s) => s.stop().catch(() => {})));
    await rm(root, { recursive: true, force: true });
    throw e;
  }

  const nodes = [...servers.keys()].map((port) => ({ host: HOST, port }));
  const get = (port: number) => {
    const s = servers.get(port);
    if (!s) throw new Error(`no cluster node on port ${port}`);
    return s;
  };

  return {
    nodes,
    async primaries() {
      const out: ClusterNodeAddr[] = [];
      for (const port of servers.keys()) {
        try {
          const info = await rawCommand(port, 'INFO replication', 500);
          if (/role:master/.test(info)) out.push({ host: HOST, port });
        } catch {
          /* node down */
        }
      }
      return out;
    },
    async kill(port) {
      await get(port).kill('SIGKILL');
    },
    async restart(port) {
      await get(port).restart();
    },
    async stop() {
      await Promise.all([...servers.values()].map((s) => s.stop().catch(() => {})));
      await rm(root, { recursive: true, force: true });
    },
  };
}
