import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// ARCHITECTURE.md section 7: Lua decodes nothing a user wrote (a key with a lone surrogate made
// cjson.decode fail in every park of the run). The library decodes no JSON at all: what it needs of a
// user's value comes as an argument of its own.
describe('the Lua library', () => {
  it('calls no cjson.decode', () => {
    const lua = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'lua');
    const files = [...readdirSync(path.join(lua, 'includes')).map((f) => path.join('includes', f)), ...readdirSync(lua).filter((f) => f.endsWith('.lua'))];
    const decoding = files.filter((file) => /cjson\.decode/.test(readFileSync(path.join(lua, file), 'utf8')));
    expect(decoding).toEqual([]);
  });
});
