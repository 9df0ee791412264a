#!/usr/bin/env bash
# Idempotent set-up: apt packages, a venv in .venv, torch==2.13.0 (CPU wheel) first, then the
# package in editable mode with its test extras. Safe to run again; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS="bart ismrmrd-tools"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: missing Debian packages:$missing; install them with: sudo apt-get install -y$missing" >&2
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
stamp=.venv/.fastmri_diffmask_installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q torch==2.13.0
  # fastmri's declared dependencies pull pytorch-lightning 2 and a broken torchvision: install
  # it without them; pyproject.toml declares what fastmri really needs.
  python -m pip install -q --no-deps fastmri==0.3.0
  python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
