/**
 * Reads the fenced code blocks of the README and the guides, for the test that compiles and runs them
 * (test/e2e/docs.e2e.spec.ts). A block's role is given by an HTML comment on the line before its fence:
 *
 *   <!-- docs-test: skip (why) -->       not compiled: a fragment, or it needs a package this repo lacks
 *   <!-- docs-test: append <file> -->    appended, in order, to <file> of the document's project
 *   <!-- docs-test: <name> -->           a block the test reads by name (the README's tsconfig, jest config…)
 *
 * A ```ts block without a comment is compiled: as the file its first line names (`// src/main.ts`), or
 * alone. Every ```ts block is therefore either compiled or skipped with a reason.
 */
import { readFileSync } from 'node:fs';

export interface DocBlock {
  /** The markdown file, relative to the repository. */
  doc: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  /** The text of the `docs-test:` comment before the fence, if any. */
  directive?: string;
}

const DIRECTIVE = /^<!--\s*docs-test:\s*(.+?)\s*-->$/;
const FENCE = /^```(\S*)\s*$/;

export function readDocBlocks(repo: string, doc: string): DocBlock[] {
  const lines = readFileSync(`${repo}/${doc}`, 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i += 1) {
    const open = FENCE.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i += 1; i < lines.length && lines[i] !== '```'; i += 1) body.push(lines[i]);
    if (i >= lines.length) throw new Error(`${doc}:${start + 1}: a code block is not closed.`);
    const directive = start > 0 ? DIRECTIVE.exec(lines[start - 1].trim())?.[1] : undefined;
    blocks.push({ doc, line: start + 1, lang: open[1], code: `${body.join('\n')}\n`, directive });
  }
  return blocks;
}

/** The file a block is compiled as, inside its document's project. */
export function fileOfBlock(block: DocBlock): string | undefined {
  if (block.lang !== 'ts' || block.directive?.startsWith('skip')) return undefined;
  const append = /^append\s+(\S+\.ts)$/.exec(block.directive ?? '');
  if (append) return append[1];
  const named = /^\/\/ ([\w./-]+\.ts)\s*$/.exec(block.code.split('\n')[0]);
  return named ? named[1] : `block-line-${block.line}.ts`;
}

/** The files of a document's project: named blocks as they are, appended blocks joined in order. */
export function projectFiles(blocks: DocBlock[]): Map<string, string> {
  const files = new Map<string, string>();
  const appended = new Set<string>();
  for (const block of blocks) {
    const file = fileOfBlock(block);
    if (!file) continue;
    const isAppend = block.directive?.startsWith('append') ?? false;
    if (files.has(file) && !(isAppend && appended.has(file))) {
      throw new Error(`${block.doc}:${block.line}: a second block names the file ${file}; give each whole file its own name.`);
    }
    if (isAppend) appended.add(file);
    files.set(file, (files.get(file) ?? '') + block.code);
  }
  return files;
}

/** The block marked `<!-- docs-test: <name> -->`; exactly one must exist. */
export function namedBlock(blocks: DocBlock[], name: string): DocBlock {
  const found = blocks.filter((b) => b.directive === name);
  if (found.length !== 1) throw new Error(`Expected one block marked <!-- docs-test: ${name} --> in ${blocks[0]?.doc}, found ${found.length}.`);
  return found[0];
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Anchors of a markdown file's headings (outside code blocks). */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let inCode = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const heading = !inCode && /^#{1,6}\s+(.*)$/.exec(line);
    if (heading) anchors.add(headingAnchor(heading[1]));
  }
  return anchors;
}
