#!/usr/bin/env bash
# Reproduce CURL's DMControl table on one GPU: the six benchmark tasks x seeds, several runs in
# parallel, then copy each run's small logs into experiments/results/dmc/<task>/seed_<s>/ and
# draw the learning curves and the table (experiments/plot_results.py).
#
#   scripts/run_curl_benchmark.sh                         # 100k env steps, seeds 1 2 3, 6 at once
#   scripts/run_curl_benchmark.sh --steps 500000 --seeds "1 2 3 4 5"
#   scripts/run_curl_benchmark.sh --tasks "walker-walk" --seeds 1 -- --batch-size 256
#   scripts/run_curl_benchmark.sh --collect-only          # copy logs of finished/partial runs, plot
#   scripts/run_curl_benchmark.sh --device cpu --jobs 2 --tasks cartpole-swingup \
#       --variant no_curl -- --curl-update-freq 0 --threads 1    # an ablation, 2 runs on 2 cores
#   scripts/run_curl_benchmark.sh --bench                 # also the GPU speed benchmarks
#   scripts/run_curl_benchmark.sh --moco                  # also a MoCo v2 run on DMC frames
#
# Runs resume from their checkpoint when the same command is run again (also to extend 100k runs
# to 500k: same --runs-dir, larger --steps). Arguments after "--" go to experiments.train_dmc.
# Environment: PYTHON (default .venv/bin/python), MUJOCO_GL (default egl: on NVIDIA it renders on
# the GPU), OMP_NUM_THREADS (default 2 per run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STEPS=100000
SEEDS="1 2 3"
# Default: CURL's tasks from the task table (envs/tasks.py), action repeat 2 first (the longest
# runs), so the parallel slots drain evenly; read after the options, with $PYTHON.
TASKS=
JOBS=6
DEVICE=cuda
RUNS_DIR=runs/curl_benchmark
RESULTS_DIR=experiments/results
VARIANT=
COLLECT_ONLY=0
DRY_RUN=0
BENCH=0
MOCO=0
EXTRA=()

usage() {
  cat <<EOF
Usage: scripts/run_curl_benchmark.sh [options] [-- train_dmc flags...]

Reproduce CURL's DMControl table: train the six benchmark tasks x seeds (several runs in
parallel), copy each run's logs into RESULTS/dmc/<task>/seed_<s>/ and draw the learning curves
and the table (experiments/plot_results.py). Running the same command again resumes every run
from its checkpoint (also to extend 100k runs: same --runs-dir, larger --steps).

Options (default in brackets):
  --steps N          environment steps per run [$STEPS]
  --seeds "S ..."    seeds, space-separated [$SEEDS]
  --tasks "T ..."    tasks, space-separated [CURL's six: python -m envs.tasks --curl-tasks]
  --jobs N           runs at a time [$JOBS]
  --device D         cuda | cuda:N | cpu [$DEVICE]
  --runs-dir DIR     where the runs (checkpoints, videos, logs) go [$RUNS_DIR]
  --results-dir DIR  where the small logs, plots and tables go [$RESULTS_DIR]
  --variant NAME     name the runs (an ablation: pass its flags after --): they go to
                     RUNS/<task>/NAME/seed_<s> and RESULTS/dmc/<task>/NAME/seed_<s>, a curve
                     and table row of their own [none: the CURL runs, <task>/seed_<s>]
  --collect-only     only copy the logs of finished/partial runs and plot
  --dry-run          print the training commands and exit
  --bench            also run the GPU speed benchmarks
  --moco             also render DMC frames and run a MoCo v2 ResNet-18 pretraining
  -h, --help         show this help and exit
  -- ARGS...         pass ARGS to every experiments.train_dmc run (e.g. -- --batch-size 256)

Every run's settings are checked before the first run starts. Ctrl-C, kill (SIGTERM) or a
closed terminal sends SIGTERM to the runs: each writes its checkpoint and exits.

Environment: PYTHON [.venv/bin/python], MUJOCO_GL [egl], OMP_NUM_THREADS [2 per run].
Exit status: 0 all runs finished; 1 a run failed (rerun to resume it); 2 a usage error;
130 / 143 / 129 stopped by Ctrl-C / SIGTERM / SIGHUP (rerun to resume).
EOF
}
fail_usage() { echo "error: $* (see --help)" >&2; exit 2; }
need_value() {  # flag, number of remaining arguments, value
  [ "$2" -ge 2 ] && [ -n "$3" ] && [[ "$3" != --* ]] || fail_usage "$1 needs a value"
}
need_int() {  # flag, value: a positive integer
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || fail_usage "$1=$2 must be a positive integer"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --steps|--seeds|--tasks|--jobs|--device|--runs-dir|--results-dir|--variant)
      need_value "$1" "$#" "${2-}" ;;&
    --steps) need_int "$1" "$2"; STEPS="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --tasks) TASKS="$2"; shift 2 ;;
    --jobs) need_int "$1" "$2"; JOBS="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --runs-dir) RUNS_DIR="$2"; shift 2 ;;
    --results-dir) RESULTS_DIR="$2"; shift 2 ;;
    --variant) [[ "$2" =~ ^[A-Za-z0-9_.-]+$ ]] && [[ "$2" != seed_* ]] \
        || fail_usage "--variant=$2: use letters, digits, '_', '-' or '.' (not seed_...)"
      VARIANT="$2"; shift 2 ;;
    --collect-only) COLLECT_ONLY=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --bench) BENCH=1; shift ;;
    --moco) MOCO=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) fail_usage "unknown argument: $1" ;;
  esac
done
for seed in $SEEDS; do
  [[ "$seed" =~ ^[0-9]+$ ]] || fail_usage "--seeds: '$seed' is not a non-negative integer"
done

fail() { echo "error: $*" >&2; exit 2; }  # one line, no usage hint
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null 2>&1 \
  || fail "PYTHON=$PYTHON not found: run scripts/setup.sh or set PYTHON"
if [ -z "$TASKS" ]; then
  # its own error message becomes part of ours: one error line in all
  TASKS="$("$PYTHON" -m curl_moco.envs.tasks --curl-tasks 2>&1)" \
    || fail "PYTHON=$PYTHON could not list CURL's tasks (python -m curl_moco.envs.tasks" \
      "--curl-tasks: $(printf '%s' "$TASKS" | tail -n 1)); run scripts/setup.sh or set PYTHON"
fi
[ -n "$TASKS" ] || fail_usage "--tasks is empty"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-$MUJOCO_GL}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
run_path() { echo "$1/${VARIANT:+$VARIANT/}seed_$2"; }  # task seed: <task>[/<variant>]/seed_<s>
run_dir() { echo "$RUNS_DIR/$(run_path "$1" "$2")"; }
say() { printf '[curl-benchmark %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ "$DRY_RUN" = 0 ] && [ "$COLLECT_ONLY" = 0 ] && [[ "$DEVICE" == cuda* ]]; then
  "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || fail "--device $DEVICE: no CUDA device visible to torch; run on a GPU machine, or pass" \
      "--device cpu (slow)"
fi

run_command() {  # task seed -> the training command, one word per line
  local task="$1" seed="$2"
  printf '%s\n' "$PYTHON" -m experiments.train_dmc --preset curl --task "$task" --seed "$seed" \
    --steps "$STEPS" --run-dir "$(run_dir "$task" "$seed")" --device "$DEVICE" --no-progress \
    ${EXTRA[@]+"${EXTRA[@]}"}
}

END_OF_RUN="--end-of-run--"
check_runs() {  # every training command's settings (tasks, device, flags) before the first run
  for seed in $SEEDS; do for task in $TASKS; do
    run_command "$task" "$seed" | tail -n +4  # the flags, one per line
    echo "$END_OF_RUN"
  done; done | "$PYTHON" -c '
import sys
from curl_moco.experiments.train_dmc import check_settings
from curl_moco.io.errors import UsageError
argv = []
for word in sys.stdin.read().split("\n")[:-1]:
    if word != sys.argv[1]:
        argv.append(word)
        continue
    try:
        check_settings(argv)
    except UsageError as error:
        sys.exit(f"error: {error}")
    argv = []
' "$END_OF_RUN"
}

collect() {  # task seed: copy the run's small logs into the results tree
  local task="$1" seed="$2"
  local src dest
  src="$(run_dir "$task" "$seed")" dest="$RESULTS_DIR/dmc/$(run_path "$task" "$seed")"
  [ -f "$src/eval.csv" ] || { say "no eval.csv in $src yet"; return 0; }
  mkdir -p "$dest"
  for f in eval.csv train.csv config.json; do
    [ -f "$src/$f" ] && cp "$src/$f" "$dest/$f"
  done
  {
    echo "# command (run from the repository root)"
    run_command "$task" "$seed" | sed "s|^$PYTHON\$|python|" | tr '\n' ' ' | sed 's/ $/\n/'
    echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(
      git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# device: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")' 2>/dev/null)"
    echo "# parallel runs: $JOBS"
    [ -z "$VARIANT" ] || echo "# variant: $VARIANT"
  } > "$dest/command.txt"
}

PIDS_DIR=""  # one file per running training process, named by its PID (for stop_runs)
train_one() {  # task seed
  local task="$1" seed="$2" log pid status=0
  log="$(run_dir "$task" "$seed").log"
  mkdir -p "$(dirname "$log")"
  local cmd=()
  mapfile -t cmd < <(run_command "$task" "$seed")
  say "start $task ${VARIANT:+$VARIANT }seed $seed -> $log"
  "${cmd[@]}" >> "$log" 2>&1 &
  pid=$!
  : > "$PIDS_DIR/$pid"
  wait "$pid" || status=$?
  rm -f "$PIDS_DIR/$pid"
  if [ "$status" = 0 ]; then
    say "done  $task seed $seed: $(grep -m1 'final evaluation' "$log" | sed 's/^ *//')"
    collect "$task" "$seed"
  elif [ "$status" = 129 ] || [ "$status" = 130 ] || [ "$status" = 143 ]; then
    say "stopped $task seed $seed (signal, exit $status); the same command resumes it"
    collect "$task" "$seed"
    return 1
  else
    say "FAILED $task seed $seed (exit $status); last lines of $log:"
    tail -n 5 "$log" >&2
    collect "$task" "$seed"
    return 1
  fi
}

failed=0
if [ "$COLLECT_ONLY" = 1 ]; then
  for task in $TASKS; do for seed in $SEEDS; do collect "$task" "$seed"; done; done
elif [ "$DRY_RUN" = 1 ]; then
  for seed in $SEEDS; do for task in $TASKS; do
    run_command "$task" "$seed" | tr '\n' ' '; echo
  done; done
  exit 0
else
  check_runs || exit 2  # its one error line is printed
  PIDS_DIR="$(mktemp -d)"
  # Ctrl-C, kill or a closed terminal: every training run writes its checkpoint and exits (the
  # runs themselves ignore the terminal's Ctrl-C: background jobs of a script do), then we do.
  stop_runs() {  # exit status
    trap '' INT TERM HUP
    say "stopping: every running training run writes its checkpoint and exits; rerun the same" \
      "command to resume"
    local f
    for f in "$PIDS_DIR"/*; do [ -e "$f" ] && kill -TERM "${f##*/}" 2>/dev/null; done
    wait
    rm -rf "$PIDS_DIR"
    exit "$1"
  }
  trap 'stop_runs 130' INT
  trap 'stop_runs 143' TERM
  trap 'stop_runs 129' HUP
  say "tasks: $TASKS | seeds: $SEEDS | $STEPS env steps | $JOBS runs at a time on $DEVICE"
  for seed in $SEEDS; do
    for task in $TASKS; do
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n || failed=$((failed + 1))
      done
      train_one "$task" "$seed" &
    done
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=$((failed + 1)); done
  trap - INT TERM HUP
  rm -rf "$PIDS_DIR"
fi

if [ "$MOCO" = 1 ] && [ "$COLLECT_ONLY" = 0 ]; then
  frames=data/dmc_frames_100
  if [ ! -f "$frames/manifest.json" ]; then
    say "rendering the DMC frame data set into $frames"
    "$PYTHON" -m experiments.collect_frames --out "$frames" --frames-per-domain 2000 \
      --episode-frames 100 --image-size 100 --workers 6
  fi
  moco_run="runs/moco/mocov2-resnet18-dmc"
  say "MoCo v2 ResNet-18 on $frames -> $moco_run"
  "$PYTHON" -m experiments.pretrain_moco --preset mocov2 --data "$frames" --arch resnet18 \
    --small-input --load-size 100 --crop-size 84 --batch-size 256 --queue-size 4096 \
    --epochs 100 --num-workers 8 --channels-last --run-dir "$moco_run" --no-progress \
    > "$moco_run.log" 2>&1 || { say "MoCo run failed: see $moco_run.log"; failed=$((failed + 1)); }
  dest="$RESULTS_DIR/moco/$(basename "$moco_run")"
  mkdir -p "$dest"
  for f in epoch.csv train.csv config.json run.json; do
    [ -f "$moco_run/$f" ] && cp "$moco_run/$f" "$dest/$f"
  done
fi

if [ "$BENCH" = 1 ] && [ "$COLLECT_ONLY" = 0 ]; then
  out=experiments/bench/results/gpu
  say "GPU benchmarks -> $out"
  "$PYTHON" -m experiments.bench.bench_replay --device cuda --repeats 50 --out-dir "$out" || failed=$((failed + 1))
  # add --official-curl DIR (a clone of MishaLaskin/curl) for the official code's row
  "$PYTHON" -m experiments.bench.bench_update --device cuda --repeats 30 --warmup 3 \
    --out-dir "$out" || failed=$((failed + 1))
  "$PYTHON" -m experiments.bench.bench_pretrain --device cuda --image-size 256 --crop-size 224 \
    --batch-size 256 --num-workers 8 --num-images 4096 --batches 10 --rounds 2 \
    --train-steps 10 --out-dir "$out" || failed=$((failed + 1))
  "$PYTHON" -m experiments.bench.bench_env --out-dir "$out" || failed=$((failed + 1))
fi

# Plot what there is; with nothing to plot (every run failed) say so instead of a second error
if [ -n "$(find "$RESULTS_DIR/dmc" -name eval.csv -print -quit 2>/dev/null)" ]; then
  "$PYTHON" -m experiments.plot_results --results "$RESULTS_DIR" || failed=$((failed + 1))
else
  say "no eval.csv under $RESULTS_DIR/dmc yet: nothing to plot"
fi
if [ "$failed" -gt 0 ]; then
  say "$failed job(s) failed; rerun the same command to resume them"
  exit 1
fi
