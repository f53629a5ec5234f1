#!/usr/bin/env bash
# Set up (idempotent), then lint and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "[test] ruff check ." >&2
.venv/bin/ruff check .
echo "[test] pytest" >&2
set +e
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}" .venv/bin/python -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "[test] pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
