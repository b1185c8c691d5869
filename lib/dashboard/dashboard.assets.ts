import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The dashboard's front end: hand-written files in lib/dashboard/assets, served as they are (no build
 * step). Found by walking up from this file, so it works from lib/ (tests) and dist/lib/ (the package).
 */
function findAssetsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const candidate of [join(dir, 'assets'), join(dir, 'lib', 'dashboard', 'assets')]) {
      if (existsSync(join(candidate, 'dashboard.js'))) return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('nestjs-redis-workflows: cannot find lib/dashboard/assets next to package.json; reinstall the package.');
    dir = parent;
  }
}

export interface DashboardAssets {
  html: (base: string, readOnly: boolean) => string;
  script: string;
  styles: string;
}

let cached: DashboardAssets | undefined;

export function loadDashboardAssets(): DashboardAssets {
  if (cached) return cached;
  const dir = findAssetsDir();
  const read = (file: string) => readFileSync(join(dir, file), 'utf8');
  const template = read('index.html');
  cached = {
    html: (base, readOnly) => template.replaceAll('{{base}}', escapeAttribute(base)).replaceAll('{{readOnly}}', String(readOnly)),
    script: read('dashboard.js'),
    styles: read('dashboard.css'),
  };
  return cached;
}

function escapeAttribute(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
