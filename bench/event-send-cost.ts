/**
 * Redis's instructions per sendEvent (wf1_send_event, no waiters), counted with callgrind: 2,000 sends to
 * one (event, key) and 2,000 sends to 2,000 keys, pipelined, after as many to warm up.
 *
 *   tsc -p tsconfig.scripts.json && node dist-scripts/bench/event-send-cost.js
 *   LUA_B=/path/to/other/lua ...               also counts another lua/ folder (B), on a server of its own
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { assembleLuaLibrary } from '../lib/redis/lua-library.js';
import { countInstructions } from './support/callgrind.js';
import { startBenchRedis } from './support/redis-server.js';

const N = 2000;
const here = path.dirname(fileURLToPath(import.meta.url));
const variants: [string, string][] = [['A', path.resolve(here, '..', '..', 'lua')]];
if (process.env.LUA_B) variants.push(['B', process.env.LUA_B]);

for (const [label, dir] of variants) {
  const server = await startBenchRedis({ callgrind: true });
  const redis = new Redis(server.url);
  try {
    await redis.function('LOAD', 'REPLACE', assembleLuaLibrary(dir).code);
    for (const shape of ['one key', 'a key each']) {
      const send = (tag: string) => {
        const pipeline = redis.pipeline();
        for (let i = 0; i < N; i += 1) {
          const key = shape === 'one key' ? `k-${tag}` : `k-${tag}-${i}`;
          pipeline.call('FCALL', 'wf1_send_event', 1, '{bench:~events}', `${tag}-${i}`, 'msg', key, '{"x":1}', 86_400_000);
        }
        return pipeline.exec();
      };
      await send(`warm-${shape}`);
      const counted = await countInstructions(server);
      await send(shape.replace(' ', '-'));
      const { instructions } = await counted();
      console.log(`${label} ${shape}: ${Math.round(instructions / N).toLocaleString('en')} instructions/send`);
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
}
