/**
 * Jest runs in native ESM mode (NODE_OPTIONS=--experimental-vm-modules, see
 * package.json "test"). ts-jest transpiles each file in isolation (no type
 * check: `npm run typecheck` does that) because tsconfig.json sets
 * isolatedModules; in that mode it still emits
 * decorator metadata, which Nest constructor injection depends on.
 * @type {import('jest').Config}
 */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
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
  testTimeout: 30000,
};
