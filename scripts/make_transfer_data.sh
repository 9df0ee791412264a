#!/usr/bin/env bash
# The "another real subject" test set (issue #6): dipy's t1_coronal_slice.npy (a real T1 coronal
# slice of a subject other than Colin27, BSD-3 like dipy) through `make-data --from`, 6 repeats
# of simulated coils/phase/noise, into runs/transfer_dipy_t1/test. See fastmri_diffmask/data/DATACARD.md.
#
#   scripts/make_transfer_data.sh [OUT]     # default OUT = runs/transfer_dipy_t1
#
# Needs PyPI (pip download of the dipy wheel, ~10 MB, not installed: only the .npy is taken
# from it). DIPY_CACHE (default runs/.cache/dipy) keeps the wheel; a wheel already there is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/transfer_dipy_t1}
CACHE=${DIPY_CACHE:-runs/.cache/dipy}
VERSION=1.12.1
MEMBER=dipy/data/files/t1_coronal_slice.npy
[ -f .venv/bin/activate ] && . .venv/bin/activate
mkdir -p "$CACHE"
. scripts/wheel_files.sh  # wheel, extract
SRC="$CACHE/t1_coronal_slice.npy"
extract "$(wheel dipy "$VERSION")" "$MEMBER" "$SRC"
fastmri-diffmask make-data --from "$SRC" --out "$OUT" --repeats 6 --split-name test
