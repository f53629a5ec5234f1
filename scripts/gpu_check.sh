#!/usr/bin/env bash
# The project on one CUDA machine in under 8 minutes, all figures in one JSON:
#   1. the test suite's CUDA-capable tests on the GPU (pytest -m cuda tests);
#   2. bench_update at batch 128 and 512: the official CURL code (--official-curl DIR or
#      $CURL_OFFICIAL_DIR) or else the in-project baseline, our eager rows, and torch.compile;
#   3. 20k environment steps of --preset cartpole-swingup with --device cuda and torch.compile
#      (environment steps/s from the run's train.csv);
#   4. one epoch of --preset mocov3_vit (ViT-S/16) on rendered dm_control frames (images/s).
# Each stage has a time budget; a failing stage is recorded and the next one runs.
#
#   scripts/gpu_check.sh                                  # JSON under $OUT, else experiments/bench/results/gpu_check
#   scripts/gpu_check.sh --official-curl ~/src/curl --out /tmp/gpu_check
#   scripts/gpu_check.sh --dry-run                        # print the stage commands only
#   scripts/gpu_check.sh --help
#
# Without a CUDA device it says so and exits 0. Exit status: 0 every stage ok (or no GPU);
# 1 a stage failed or ran out of time (see gpu_check.json); 2 a usage error.
# Environment: PYTHON [.venv/bin/python, else python3], MUJOCO_GL [egl: renders on the GPU].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null \
  || { echo "error: PYTHON=$PYTHON not found: run scripts/setup.sh or set PYTHON" >&2; exit 2; }
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-$MUJOCO_GL}"
exec "$PYTHON" -m curl_moco.experiments.bench.gpu_check "$@"
