import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { WorkflowConnection } from '../interfaces/module-options.interface.js';

/**
 * Where a connection points, for log lines and errors, with any password masked: a connection string
 * is often pasted from a secret store, and a start-up error must not echo the secret into logs.
 */
export function describeConnection(connection: WorkflowConnection | undefined, fallback: string): string {
  const given = connection ?? fallback;
  if (typeof given === 'string') return maskUrl(given);
  // the nodes it was given (a private field of ioredis's Cluster; its known nodes are empty before it connects)
  if (given instanceof Cluster) return `cluster ${describeNodes((given as unknown as { startupNodes?: unknown[] }).startupNodes ?? [])}`;
  if (given instanceof Redis) return hostPort(given.options);
  if ('nodes' in given && Array.isArray(given.nodes)) return `cluster ${describeNodes(given.nodes)}`;
  return hostPort(given as RedisOptions);
}

/**
 * A URL-like text with the user-info's password replaced by ***: 'redis://user:***@host:6379'. Text that
 * is not a valid URL is masked the same way (everything between '//' or the start and the last '@' that
 * looks like credentials).
 */
export function maskUrl(text: string): string {
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  const slashes = text.indexOf('//');
  const start = slashes >= 0 && slashes < at ? slashes + 2 : 0;
  const userInfo = text.slice(start, at);
  const colon = userInfo.indexOf(':');
  const masked = colon >= 0 ? `${userInfo.slice(0, colon)}:***` : '***';
  return `${text.slice(0, start)}${masked}${text.slice(at)}`;
}

function hostPort(options: Partial<RedisOptions> | undefined): string {
  if (options?.path) return `unix socket ${options.path}`;
  return `${options?.host ?? '127.0.0.1'}:${options?.port ?? 6379}`;
}

function describeNodes(nodes: unknown[]): string {
  return nodes
    .map((node) => (typeof node === 'string' ? maskUrl(node) : typeof node === 'number' ? `127.0.0.1:${node}` : hostPort(node as RedisOptions)))
    .join(', ');
}

/** An error from Redis that says the credentials were refused: waiting longer will not help. */
export function isAuthenticationError(error: Error | undefined): boolean {
  return !!error && /WRONGPASS|NOAUTH|invalid password|invalid username-password|AUTH.*(failed|without any password)/i.test(error.message);
}
