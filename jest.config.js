/**
 * Jest runs in native ESM mode (NODE_OPTIONS=--experimental-vm-modules, see
 * package.json "test"). ts-jest transpiles each file in isolation (no type
 * check: `npm run typecheck` does that) because tsconfig.json sets
 * isolatedModules; in that mode it still emits
 * decorator metadata, which Nest constructor injection depends on.
 *
 * Two projects: `default` (unit and e2e suites, `npm test`, under 10 minutes) and `slow` (the suites that
 * work at the sizes users reach: 10,000 children, waiters, records; `npm run test:slow`). `.ci/run` runs both.
 * `npm test` runs two jest workers even on 2 cores (jest's default there is one): most suites wait on Redis,
 * timers and child processes, and two workers took a full run from 920 s to 440 s on a busy 2-core machine.
 * The slow project runs in band: its suites measure sizes and SLOWLOG, which a neighbour would disturb.
 * @type {import('jest').Config}
 */
const common = {
  testEnvironment: 'node',
  rootDir: '.',
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      {
        useESM: true,
        tsconfig: '<rootDir>/tsconfig.json',
        diagnostics: false,
      },
    ],
  },
};

export default {
  testTimeout: 30000,
  projects: [
    { ...common, displayName: 'default', roots: ['<rootDir>/test'], testMatch: ['<rootDir>/test/{unit,e2e}/**/*.spec.ts'] },
    { ...common, displayName: 'slow', roots: ['<rootDir>/test'], testMatch: ['<rootDir>/test/slow/**/*.spec.ts'] },
  ],
};
