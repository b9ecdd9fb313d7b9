#!/usr/bin/env bash
# Runs the whole test suite. Installs what is missing first (redis-server, PostgreSQL, a C
# toolchain, and the deployment checkers of tools.sh);
# the tests start their own throwaway PostgreSQL and Redis on free ports and stop them
# when they finish. Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
"$here/stack.sh" deps
"$here/tools.sh"
# The local-cluster test runs the real binary.
cargo build --locked --bin dinq-message
exec cargo test --locked --workspace "$@"
