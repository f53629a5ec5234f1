#!/usr/bin/env bash
# The README's stills: one per CURL task family, from the evaluate command's agent's-eye view
# (third-person camera | centre crop the network sees). The agents are SHORT runs (400
# environment steps, tiny networks): the pictures show the set-up, not trained behaviour.
# Usage: bash experiments/results/stills/make_stills.sh [RUNS_DIR [TASK ...]]
# (rerunning resumes an interrupted run: its folder is in RUNS_DIR)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
runs="${1:-/tmp/curl_moco_stills}"
shift || true
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(cartpole-swingup walker-walk cheetah-run finger-spin reacher-easy
                             ball_in_cup-catch)
out=experiments/results/stills
for task in "${tasks[@]}"; do
  nice -n 10 .venv/bin/python -m experiments.train_dmc --preset smoke --task "$task" \
    --action-repeat 4 --image-size 100 --crop-size 84 --episode-length 200 --steps 400 \
    --seed-steps 200 --eval-every 400 --eval-episodes 1 --checkpoint-every 400 --no-video \
    --no-tensorboard --no-progress --device cpu --run-dir "$runs/$task"
  nice -n 10 .venv/bin/python -m experiments.evaluate --run "$runs/$task" --episodes 1 \
    --video none --still --agent-view --video-size 128 --device cpu --out "$runs/$task/eval"
  cp "$runs/$task/eval/still.png" "$out/$task.png"
done
