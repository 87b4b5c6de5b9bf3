#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run the whole suite.
# Used by newcomers (see README.md) and by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's chromium drives the real-browser tests (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi

PY=$(command -v python3.11 || command -v python3)
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -r requirements-dev.txt
# onnx2torch without its torchvision requirement (requirements-onnx.txt says why)
pip install -q --no-deps -r requirements-onnx.txt

ruff check fercore app tests bench
python -m pytest -q "$@"
