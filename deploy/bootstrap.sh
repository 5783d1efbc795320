#!/usr/bin/env bash
# Install everything LaaS needs on this machine, then run it.
#   bash deploy/bootstrap.sh up     # install, then `laas up` (stack + worker + web + gateway)
#   bash deploy/bootstrap.sh test   # install, start the stack if needed, run the whole test suite
# Idempotent: a second run only redoes what changed.
set -euo pipefail

mode="${1:-up}"
shift || true
cd "$(dirname "$0")/.."
root="$(pwd)"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- system packages: a JDK, Maven, the PostgreSQL server, Chromium and kcat (tests) ---
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)  # the web UI's end-to-end tests
command -v kcat >/dev/null || missing+=(kcat)  # a direct Kafka producer in the newcomer test
command -v go >/dev/null || missing+=(golang-go)  # tests/test_compose.py's Compose loader
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    die "missing system packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})"
  fi
fi

# --- Python 3.11 virtualenv with the project and its test tools ---
python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || die "Python 3.11 is required (python3.11 not found)"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $python"
  "$python" -m venv .venv
fi
stamp=.venv/.laas-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ app/client/pyproject.toml -nt "$stamp" ]; then
  say "installing Python dependencies"
  .venv/bin/pip install -q --upgrade pip
  # the client (laas-client, app/client/) is a distribution of its own that laas depends on
  .venv/bin/pip install -q -e ./app/client -e '.[test]'
  touch "$stamp"
fi

# --- the web UI, when its sources exist ---
if [ -f web/ui/package.json ]; then
  command -v npm >/dev/null || die "npm is required to build the web UI (install Node.js 20)"
  if [ ! -d web/ui/node_modules ] || [ web/ui/package-lock.json -nt web/ui/node_modules ]; then
    say "installing UI dependencies"
    (cd web/ui && npm ci --no-audit --no-fund)
  fi
  say "building the web UI"
  (cd web/ui && npm run build)
fi

export PATH="$root/.venv/bin:$PATH"
case "$mode" in
  up)
    exec laas up "$@"
    ;;
  test)
    # Test-only tools from the Go module proxy: `docker compose config` without Docker
    # (compose-go) and a real Loki protobuf shipper (Grafana's loki-client-go).
    say "building the Compose checker and the Loki test shipper"
    (cd deploy/composecheck && go build -buildvcs=false -o "$root/.laas/bin/composecheck" .)
    (cd deploy/lokipush && go build -buildvcs=false -o "$root/.laas/bin/lokipush" .)
    say "starting the local stack (if it is not running)"
    laas stack up
    say "running the test suite"
    exec python -m pytest "$@"
    ;;
  install)
    say "installed; run: .venv/bin/laas up"
    ;;
  *)
    die "unknown mode '$mode' (use: up | test | install)"
    ;;
esac
