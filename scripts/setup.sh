#!/usr/bin/env bash
# Idempotent set-up: .venv with pinned requirements, the package in editable mode, and a working
# headless OpenGL backend for MuJoCo (installs Debian packages only when none works).
# Fast when already done: pip runs only when requirements.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 2; }  # a problem of this machine you can fix
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

stamp_now="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$stamp_now" ]; then
  say "installing Python packages (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  # setuptools prints a boxed "Editable installation ... folders with the same name as your
  # package" notice for every editable install (curl_moco/ is that folder, on purpose): silence
  # exactly that warning; any other warning still shows.
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q --no-deps -e .
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
