#!/usr/bin/env bash
# Proves that the package installs and works as the README's Install section says, with nothing of this
# repository but its tarball: packs this clone (which builds it), checks what the tarball holds, makes a
# new Nest 12 app in a temporary directory outside the repository (a first workflow, a controller and a
# jest test: scripts/package-check/app) with the tsconfig.json, jest.config.js and test script of the
# README shipped in the tarball (scripts/package-check/readme-settings.mjs), installs the tarball and
# the peers from the npm registry at the versions this repository pins, builds the app with `npx tsc`,
# runs its jest test and then its compiled main.js against a private redis-server, lists that run with
# the package's CLI (its bin), and has the installed package serve its dashboard (scripts/package-check/dashboard-check.mjs).
#
#   bash scripts/check-package.sh          (npm run check:package; .ci/run runs it after npm test)
#
# Needs node, npm, redis-server >= 7 and the npm registry (npm's cache makes a second run quicker).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/nrw-package-check-XXXXXX")
case "$work" in "$repo"/*) echo "check-package: the temporary directory must be outside the repository (TMPDIR=$TMPDIR)" >&2; exit 1 ;; esac
redis_pid=""
app_pid=""
cleanup() {
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "check-package: $*"; }
fail() { echo "check-package: FAILED: $*" >&2; exit 1; }

# ---- 1. pack (npm runs the prepare script: a fresh build) and check what the tarball holds ----
step "packing $repo"
(cd "$repo" && npm pack --pack-destination "$work" >"$work/pack.log" 2>&1) || { cat "$work/pack.log" >&2; fail "npm pack"; }
tarball=$(ls "$work"/*.tgz)
tar -tzf "$tarball" | sort >"$work/contents.txt"
unexpected=$(grep -Ev '^package/(package\.json|README\.md|LICENSE|dist/lib/.+\.(js|d\.ts)|lua/.+\.lua|lib/dashboard/assets/[^/]+)$' "$work/contents.txt" || true)
[ -z "$unexpected" ] || fail "the tarball holds files users do not need:"$'\n'"$unexpected"
for needed in package/LICENSE package/README.md package/dist/lib/index.js package/dist/lib/index.d.ts \
  package/lua/includes/00-build.lua package/lib/dashboard/assets/dashboard.js package/dist/lib/cli/main.js; do
  grep -qx "$needed" "$work/contents.txt" || fail "the tarball lacks $needed"
done
step "$(basename "$tarball"): $(wc -l <"$work/contents.txt") files, $(du -k "$tarball" | cut -f1) kB"
# npm's warnings about package.json fields (auto-corrected bin, repository, ...); being logged out is not one.
(cd "$repo" && npm publish --dry-run --ignore-scripts >"$work/publish.log" 2>&1) || { cat "$work/publish.log" >&2; fail "npm publish --dry-run"; }
warnings=$(grep -i 'warn' "$work/publish.log" | grep -v 'requires you to be logged in' || true)
[ -z "$warnings" ] || fail "npm publish --dry-run warns:"$'\n'"$warnings"

# ---- 2. a new Nest 12 app outside the repository, with the tarball and the peers from the registry ----
cp -R "$repo/scripts/package-check/app" "$work/app"
cd "$work/app"
tar -xzf "$tarball" -C "$work" package/README.md
node "$repo/scripts/package-check/readme-settings.mjs" "$work/package/README.md"
# One install of everything: the tarball, the peers and the tools at the versions package.json pins.
node -e '
  const fs = require("node:fs");
  const [repoManifest, tarball] = process.argv.slice(1);
  const pinned = require(repoManifest).devDependencies;
  const pick = (names) => Object.fromEntries(names.map((name) => { if (!pinned[name]) throw new Error(`${name} is not pinned in devDependencies`); return [name, pinned[name]]; }));
  const app = JSON.parse(fs.readFileSync("package.json", "utf8"));
  app.dependencies = { "nestjs-redis-workflows": `file:${tarball}`,
    ...pick(["@nestjs/common", "@nestjs/core", "@nestjs/platform-express", "ioredis", "reflect-metadata", "rxjs", "class-validator", "class-transformer"]) };
  app.devDependencies = pick(["typescript", "jest", "ts-jest", "@jest/globals", "@nestjs/testing", "supertest", "@types/supertest", "@types/node"]);
  fs.writeFileSync("package.json", JSON.stringify(app, null, 2) + "\n");
  console.log(`check-package: npm install ${Object.entries({ ...app.dependencies, ...app.devDependencies }).map(([n, v]) => `${n}@${v}`).join(" ")}`);
' "$repo/package.json" "$tarball"
npm install --no-audit --no-fund --prefer-offline --loglevel=error >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "npm install"; }

step "npx tsc (the README's tsconfig.json)"
npx tsc

# ---- 3. a private redis-server, then the app's jest test and its compiled main.js ----
free_port() { node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
wait_for() { # <port> <what>: waits until something accepts connections on 127.0.0.1:<port>
  node -e 'const [port, what] = process.argv.slice(1); const until = Date.now() + 15000;
    const attempt = () => { const c = require("node:net").connect(Number(port), "127.0.0.1");
      c.on("connect", () => { c.end(); process.exit(0); });
      c.on("error", () => { if (Date.now() > until) { console.error(`${what} did not answer on port ${port}`); process.exit(1); } setTimeout(attempt, 100); }); };
    attempt();' "$1" "$2"
}
command -v redis-server >/dev/null || fail "redis-server not found (bash scripts/setup.sh installs it)"
redis_port=$(free_port)
mkdir "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/redis" >"$work/redis.log" 2>&1 &
redis_pid=$!
wait_for "$redis_port" redis-server
export REDIS_URL="redis://127.0.0.1:$redis_port"

step "npm test (the README's jest.config.js and test script) against $REDIS_URL"
npm test --silent

app_port=$(free_port)
step "node dist/main.js on port $app_port"
PORT=$app_port node dist/main.js >"$work/main.log" 2>&1 &
app_pid=$!
wait_for "$app_port" "the app" || { cat "$work/main.log" >&2; fail "node dist/main.js did not start"; }
node --input-type=module -e '
  const base = `http://127.0.0.1:${process.argv[1]}`;
  const check = (what, ok) => { if (!ok) { console.error(`check-package: FAILED: ${what}`); process.exit(1); } };
  const post = await fetch(`${base}/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ orderId: "main-1", amountCents: 990 }) });
  check(`POST /orders answered ${post.status}`, post.status === 202);
  const { runId } = await post.json();
  const result = await fetch(`${base}/orders/${runId}/result`);
  const output = await result.json();
  check(`GET /orders/${runId}/result answered ${result.status} ${JSON.stringify(output)}`, result.status === 200 && output.chargeId === "ch_main-1");
  const unknown = await fetch(`${base}/orders/no-such-run`);
  check(`GET /orders/no-such-run answered ${unknown.status}`, unknown.status === 404);
' "$app_port" || { cat "$work/main.log" >&2; exit 1; }
kill -TERM "$app_pid"
status=0; wait "$app_pid" || status=$?
app_pid=""
# Nest's shutdown hooks close the app, then end the process by the signal it got (128 + 15).
[ "$status" -eq 0 ] || [ "$status" -eq 143 ] || { cat "$work/main.log" >&2; fail "node dist/main.js exited with $status on SIGTERM"; }

step "npx nestjs-redis-workflows (the package's bin) lists the run main.js made"
listed=$(npx --no-install nestjs-redis-workflows runs list --status succeeded --json) || fail "npx nestjs-redis-workflows runs list exited with $?"
node -e '
  const page = JSON.parse(process.argv[1]);
  if (!page.runs.some((run) => run.workflow && run.output && run.output.chargeId === "ch_main-1")) {
    console.error(`check-package: FAILED: the CLI did not list the run of main.js: ${process.argv[1]}`);
    process.exit(1);
  }' "$listed"

step "the dashboard's page and assets, served from the installed package"
cp "$repo/scripts/package-check/dashboard-check.mjs" "$work/app/"
node dashboard-check.mjs

step "passed in $((SECONDS - started)) s"
