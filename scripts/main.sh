#!/usr/bin/env bash
# Set up (idempotent), then run the main job: a short CURL-SAC training from pixels on
# cartpole-swingup (CPU: a few minutes) that writes logs, a checkpoint and an evaluation video.
# Extra arguments are passed to experiments.train_dmc (e.g. --device cuda, --steps 20000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m experiments.train_dmc --preset quickstart "$@"
