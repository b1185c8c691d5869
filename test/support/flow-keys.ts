import type { Redis } from 'ioredis';

/**
 * The flow-control keys left under a prefix (a key's state, held set, rate log: lua/includes/01-flow.lua),
 * and the held-run counts that are not 0: none once no run of a key is left. KEYS: for test servers only.
 */
export async function flowKeysLeft(redis: Redis, prefix: string): Promise<string[]> {
  const keys = await redis.keys(`{${prefix}:*}:f*`);
  for (const key of await redis.keys(`{${prefix}:*}:hb:*`)) {
    const counts = await redis.hgetall(key);
    if (Object.values(counts).some((v) => Number(v) !== 0)) keys.push(`${key} ${JSON.stringify(counts)}`);
  }
  return keys;
}
