#!/usr/bin/env bash
# Installs everything headlab needs to build and run, idempotently:
#   - Debian packages (HDF5, pkg-config, a C/C++ toolchain)
#   - a Python venv OUTSIDE the clone with torch==2.11.0 (its libtorch is what
#     tch links against), h5py and numpy
# and prints nothing else on the second run but a one-line "ok".
#
# Source it (`. tools/setup.sh`) to get the build environment exported:
#   LIBTORCH_USE_PYTORCH=1, PATH with the venv first, LD_LIBRARY_PATH with
#   torch's lib/, HEADLAB_PYTHON.
# Cache folder: $HEADLAB_CACHE (default ~/.cache/headlab).
_hl_saved_opts="$(set +o)"   # restored at the end when sourced
set -euo pipefail

HEADLAB_CACHE="${HEADLAB_CACHE:-$HOME/.cache/headlab}"
VENV="$HEADLAB_CACHE/venv"
TORCH_VERSION="2.11.0"
# The viewer: Xvfb and Mesa's software Vulkan for headless screenshots, and the X
# client libraries winit loads at run time.
APT_PKGS="libhdf5-dev pkg-config build-essential python3-venv libfontconfig1-dev libfreetype-dev fonts-dejavu-core
  xvfb xauth mesa-vulkan-drivers libvulkan1 libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0"

_hl_log() { echo "[setup] $*" >&2; }

mkdir -p "$HEADLAB_CACHE"
# One installer at a time (parallel builds, helpers, CI steps all source this).
exec 9>"$HEADLAB_CACHE/.setup.lock"
flock 9

_hl_need_apt=0
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || _hl_need_apt=1
done
if [ "$_hl_need_apt" = 1 ]; then
  _hl_log "installing Debian packages: $APT_PKGS"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PKGS >/dev/null
fi

STAMP="$VENV/.headlab-torch-$TORCH_VERSION"   # holds torch's lib/ path once installed
if [ ! -f "$STAMP" ] || [ ! -x "$VENV/bin/python" ]; then
  if ! "$VENV/bin/python" -c "import torch, h5py, numpy, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
    _hl_log "creating Python venv with torch==$TORCH_VERSION in $VENV (a large download, once)"
    PY="${HEADLAB_BASE_PYTHON:-$(command -v python3)}"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" h5py numpy
  fi
  "$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' > "$STAMP"
fi

TORCH_LIB="$(cat "$STAMP")"
export LIBTORCH_USE_PYTORCH=1
export PATH="$VENV/bin:$PATH"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export HEADLAB_PYTHON="$VENV/bin/python"
export HEADLAB_TORCH_LIB="$TORCH_LIB"
# Smaller, faster builds: no debug info in dependencies (see Cargo.toml).
export CARGO_TERM_PROGRESS_WHEN="${CARGO_TERM_PROGRESS_WHEN:-never}"
flock -u 9
exec 9>&-
_hl_log "ok: venv $VENV, torch lib $TORCH_LIB"
# Leave the caller's shell options as they were when this file is sourced.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then eval "$_hl_saved_opts"; fi
