#!/usr/bin/env bash
# The README's main command: set up (idempotent) and run the demo on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
exec fastmri-diffmask demo "$@"
