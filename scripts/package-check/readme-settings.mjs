// Run by scripts/check-package.sh: writes into the current directory (the scratch app) the settings the
// README's Install section gives, read from the README.md shipped in the tarball: its blocks marked
// <!-- docs-test: tsconfig -->, <!-- docs-test: jest-config --> and <!-- docs-test: package-scripts -->
// (the same blocks test/e2e/docs.e2e.spec.ts builds the quick start with). So the check uses exactly
// what a user copies.
import { readFileSync, writeFileSync } from 'node:fs';

const [readmePath] = process.argv.slice(2);
const readme = readFileSync(readmePath, 'utf8');

function block(name) {
  const match = new RegExp(`<!-- docs-test: ${name} -->\\s*\`\`\`[a-z]*\\n([\\s\\S]*?)\\n\`\`\``).exec(readme);
  if (!match) throw new Error(`README.md in the tarball has no <!-- docs-test: ${name} --> block followed by a code block.`);
  return match[1];
}

writeFileSync('tsconfig.json', `${block('tsconfig')}\n`);
writeFileSync('jest.config.js', `${block('jest-config')}\n`);
const manifest = JSON.parse(readFileSync('package.json', 'utf8'));
Object.assign(manifest, JSON.parse(`{${block('package-scripts')}}`));
writeFileSync('package.json', `${JSON.stringify(manifest, null, 2)}\n`);
