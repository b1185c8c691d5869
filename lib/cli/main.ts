#!/usr/bin/env node
import { runCli } from './program.js';

// `npx nestjs-redis-workflows <command>`: see docs/cli.md. The exit code is set, not forced, so that
// output is flushed; every command closes its Redis connections, so nothing keeps the process alive.
process.exitCode = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
});
