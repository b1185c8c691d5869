import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BenchRedis } from './redis-server.js';

/** Zeroes the server's callgrind counters; the returned function dumps them and reads the instructions counted since. */
export async function countInstructions(server: BenchRedis): Promise<() => Promise<{ instructions: number; dump: string }>> {
  const control = (...args: string[]) => promisify(execFile)('callgrind_control', [...args, String(server.pid)]);
  const dir = server.callgrindDir!;
  const dumps = async () => new Set(await readdir(dir));
  await control('-z');
  const before = await dumps();
  return async () => {
    await control('-d');
    // The dump is written by the server's process after callgrind_control has asked for it.
    for (const until = Date.now() + 60_000; Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 100))) {
      for (const name of await dumps()) {
        if (before.has(name)) continue;
        const dump = path.join(dir, name);
        const text = (await stat(dump)).size > 0 ? await readFile(dump, 'utf8') : '';
        const totals = /^(?:totals|summary): (\d+)/m.exec(text);
        if (totals) return { instructions: Number(totals[1]), dump };
      }
    }
    throw new Error(`callgrind wrote no dump into ${dir} within 60 s`);
  };
}
