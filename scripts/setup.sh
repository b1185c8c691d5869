#!/usr/bin/env bash
# From a fresh clone to a working checkout in one command:
#   bash scripts/setup.sh
# installs what is missing through the system's package manager (apt-get, with sudo when not root; dnf;
# brew): redis-server >= 7 (the tests and the sample start private servers of their own) and chromium
# (the dashboard's browser test); then `npm ci`; then runs the sample (`npm run sample`). Where it cannot
# install something it says in one line what to install, and stops. Then `npm test` passes.
# SETUP_SKIP_SAMPLE=1 leaves out the sample. .ci/run runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }
missing=()

# ---- Node.js (package.json "engines") ----
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "node and npm are missing: install Node.js >= 20.19 (https://nodejs.org), then run bash scripts/setup.sh again." >&2
  exit 1
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  say "node $(node --version) is too old: install Node.js >= 20.19 (https://nodejs.org), then run bash scripts/setup.sh again." >&2
  exit 1
fi

# ---- system packages ----
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1
  fi
}
apt_updated=""
# install redis|chromium: through the first package manager found; fails when there is none or it fails.
install() {
  if command -v apt-get >/dev/null 2>&1; then
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq && apt_updated=1 || return 1; fi
    case $1 in redis) set -- redis-server ;; chromium) set -- chromium ;; esac
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1"
  elif command -v dnf >/dev/null 2>&1; then
    as_root dnf install -y -q "$1"
  elif command -v brew >/dev/null 2>&1; then
    case $1 in redis) brew install redis ;; chromium) brew install --cask chromium ;; esac
  else
    return 1
  fi
}

redis_version() { redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9.]*\).*/\1/p'; }
redis_ok() { command -v redis-server >/dev/null 2>&1 && [ "$(redis_version | cut -d. -f1)" -ge 7 ] 2>/dev/null; }
if ! redis_ok; then
  say "installing redis-server (Redis >= 7)"
  install redis || true
fi
if ! command -v redis-server >/dev/null 2>&1; then
  missing+=("redis-server is missing: install Redis >= 7.0 (https://redis.io/downloads, or packages.redis.io for apt and rpm).")
elif ! redis_ok; then
  missing+=("redis-server $(redis_version) is too old (Redis Functions need 7.0): install Redis >= 7.0 from packages.redis.io, or build it (https://redis.io/downloads).")
fi

# Where the dashboard's browser test looks for chromium (test/e2e/dashboard.browser.e2e.spec.ts); CHROMIUM_PATH first.
find_chromium() {
  local candidate
  for candidate in "${CHROMIUM_PATH:-}" /usr/bin/chromium /usr/bin/chromium-browser /Applications/Chromium.app/Contents/MacOS/Chromium; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}
if ! find_chromium >/dev/null; then
  say "installing chromium (for the dashboard's browser test)"
  install chromium || true
fi
if ! find_chromium >/dev/null; then
  missing+=("chromium is missing: install Chromium (Debian: apt-get install chromium), or set CHROMIUM_PATH to a Chromium or Chrome binary.")
fi

if [ ${#missing[@]} -gt 0 ]; then
  for line in "${missing[@]}"; do say "$line" >&2; done
  say "then run bash scripts/setup.sh again." >&2
  exit 1
fi
say "node $(node --version), npm $(npm --version), redis-server $(redis_version), chromium $(find_chromium)"

# ---- the project ----
npm ci
if [ "${SETUP_SKIP_SAMPLE:-}" != "1" ]; then
  npm run sample
fi
say "done: npm test runs the tests."
