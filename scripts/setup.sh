#!/usr/bin/env bash
# Idempotent set-up: .venv with pinned requirements, the package in editable mode, and a working
# headless OpenGL backend for MuJoCo (installs Debian packages only when none works).
# Fast when already done: pip runs only when requirements.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 2; }  # a problem of this machine you can fix

usage() {
  cat <<'USAGE'
usage: scripts/setup.sh [--cpu] [--dry-run]

Creates .venv with the pinned requirements.txt and the package (editable), and checks headless
rendering. By default torch is the pinned build from the package index: on Linux a CUDA build
(about 6.5 GB with its NVIDIA libraries; it also runs on CPUs). This is what CI tests.

  --cpu      install the CPU-only build of the same torch/torchvision versions from PyTorch's
             CPU index ($TORCH_CPU_INDEX), without the NVIDIA libraries and triton (about
             4 GB less); then the rest of requirements.txt. For a new .venv: an existing
             .venv with the CUDA build is refused (remove .venv first).
  --dry-run  print the choices and the pip commands, change nothing
  -h, --help this text
USAGE
}

TORCH_VARIANT=default
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) TORCH_VARIANT=cpu ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) fail "unknown option '$1': use --cpu, --dry-run or --help" ;;
  esac
  shift
done
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
pinned() {  # the exact version of package $1 in requirements.txt
  sed -n "s/^$1==\([^ ;#]*\).*/\1/p" requirements.txt | head -n 1
}
TORCH_PIN="$(pinned torch)"
TORCHVISION_PIN="$(pinned torchvision)"
[ -n "$TORCH_PIN" ] && [ -n "$TORCHVISION_PIN" ] \
  || fail "requirements.txt must pin torch==X and torchvision==Y"

pip_commands() {  # the installs, one command per line
  echo ".venv/bin/python -m pip install -q --upgrade pip"
  if [ "$TORCH_VARIANT" = cpu ]; then
    echo ".venv/bin/python -m pip install -q torch==$TORCH_PIN torchvision==$TORCHVISION_PIN --index-url $TORCH_CPU_INDEX"
  fi
  echo ".venv/bin/python -m pip install -q -r requirements.txt"
  echo ".venv/bin/python -m pip install -q --no-deps -e ."
}

if [ ! -e /proc/driver/nvidia/version ] && ! command -v nvidia-smi >/dev/null 2>&1 \
    && [ "$TORCH_VARIANT" = default ]; then
  say "no NVIDIA driver found: the default torch build carries ~4 GB of GPU libraries that this machine cannot use; scripts/setup.sh --cpu installs the CPU-only build instead"
fi
if [ "$DRY_RUN" = 1 ]; then
  say "torch: $([ "$TORCH_VARIANT" = cpu ] && echo "CPU-only build $TORCH_PIN from $TORCH_CPU_INDEX" || echo "pinned build $TORCH_PIN from the package index (CI's)")"
  say "would run:"
  pip_commands
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  say "need root to run: $*"; return 1; fi; }
apt_install() {
  say "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >/dev/null
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null; then PYTHON="$candidate"; break; fi
  done
fi
[ -n "$PYTHON" ] || fail "no python3 found: install Python 3.11 (or set PYTHON=/path/to/python)"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' 2>/dev/null \
  || fail "PYTHON=$PYTHON is missing or older than 3.10: install Python 3.11"

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PYTHON" --version)"
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi

if [ "$TORCH_VARIANT" = cpu ] && [ -d .venv/lib ] \
    && ls -d .venv/lib/python3*/site-packages/nvidia >/dev/null 2>&1; then
  fail ".venv holds the CUDA build of torch (its NVIDIA libraries): remove it (rm -rf .venv) and run scripts/setup.sh --cpu again"
fi
stamp_now="$( (cat requirements.txt pyproject.toml; echo "$TORCH_VARIANT") | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$stamp_now" ]; then
  say "installing Python packages (first time: a few minutes)"
  # setuptools prints a boxed "Editable installation ... folders with the same name as your
  # package" notice for every editable install (curl_moco/ is that folder, on purpose): silence
  # exactly that warning; any other warning still shows.
  while read -r command; do
    # shellcheck disable=SC2086  # one command per line, words split on purpose
    PYTHONWARNINGS="ignore:Editable installation" $command
  done < <(pip_commands)
  echo "$stamp_now" > .venv/.setup-stamp
fi

gl_works() {
  MUJOCO_GL="$1" PYOPENGL_PLATFORM="$1" timeout 60 .venv/bin/python -c \
    'import mujoco; c = mujoco.GLContext(16, 16); c.make_current(); c.free()' >/dev/null 2>&1
}
if [ -n "${MUJOCO_GL:-}" ]; then
  gl_works "$MUJOCO_GL" || fail "MUJOCO_GL=$MUJOCO_GL does not work here; unset it to let set-up choose"
  say "rendering backend: MUJOCO_GL=$MUJOCO_GL (set by you)"
elif gl_works egl; then
  say "rendering backend: egl"
elif gl_works osmesa; then
  say "rendering backend: osmesa"
else
  apt_install libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6
  if gl_works egl; then say "rendering backend: egl"
  elif gl_works osmesa; then say "rendering backend: osmesa"
  else fail "no headless OpenGL backend works (tried egl, osmesa): install libegl1 libgl1-mesa-dri or libosmesa6"; fi
fi
