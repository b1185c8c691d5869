import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LIBRARY_NAME = 'wf1';

export interface LuaLibrary {
  name: string;
  build: number;
  code: string;
  /** sha256 (hex) of `code`: with the build, what identifies a library (see libraryHash). */
  hash: string;
}

/** The identity of a library's code, as loaded: the sha256 (hex) of the text FUNCTION LIST WITHCODE returns. */
export function libraryHash(code: string): string {
  return createHash('sha256').update(code).digest('hex');
}

/** The lua/ folder of this package, found by walking up from this file (works from lib/ and dist/). */
function findLuaDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'lua');
    if (existsSync(join(candidate, 'includes', '00-build.lua'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('nestjs-redis-workflows: cannot find its lua/ folder next to package.json; reinstall the package.');
    dir = parent;
  }
}

let cached: LuaLibrary | undefined;

/** This package's Function library (assembled once). */
export function loadLuaLibrary(): LuaLibrary {
  cached ??= assembleLuaLibrary(findLuaDir());
  return cached;
}

/** Assembles the one Function library from a lua/ folder: the shared includes first, then one file per function family. */
export function assembleLuaLibrary(luaDir: string): LuaLibrary {
  const read = (folder: string) =>
    readdirSync(folder)
      .filter((file) => file.endsWith('.lua'))
      .sort()
      .map((file) => `-- ${file}\n${readFileSync(join(folder, file), 'utf8')}`);
  const parts = [...read(join(luaDir, 'includes')), ...read(luaDir)];
  const code = `#!lua name=${LIBRARY_NAME}\n${parts.join('\n')}`;
  const match = /local BUILD = (\d+)/.exec(code);
  if (!match) throw new Error('nestjs-redis-workflows: lua/includes/00-build.lua has no BUILD number.');
  return { name: LIBRARY_NAME, build: Number(match[1]), code, hash: libraryHash(code) };
}
