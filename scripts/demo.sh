#!/usr/bin/env bash
# One command, no Docker: `cxstream demo` with a local broker, the worker,
# generated traffic and a live view of the metrics. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
. scripts/venv.sh
ensure_venv .

exec .venv/bin/cxstream demo "$@"
