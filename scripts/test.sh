#!/usr/bin/env bash
# The README's test command: set up (idempotent) and run the fast test suite on CPU.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m slow` for the end-to-end tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
exec python -m pytest -q "$@"
