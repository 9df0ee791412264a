"""Export a learned mask as an acquisition table (ISMRMRD template and CSV) and read it back.

The ISMRMRD ``.h5`` template lists one readout per sampled phase-encode line, in acquisition
order, with ``kspace_encode_step_1`` = the mask column and calibration flags on the centre.

    python examples/export_sequence.py --mask runs/examples/learned_R8.safetensors --out runs/examples/seq
"""

import argparse
import csv
from pathlib import Path

import numpy as np

from fastmri_diffmask import load_mask_file
from fastmri_diffmask.sequence import export_sequence, read_sequence_template

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--mask", default="runs/examples/learned_R8.safetensors", help="a learned mask file")
p.add_argument("--out", default="runs/examples/seq", help="output prefix (.h5 and .csv are added)")
p.add_argument("--order", choices=["center-out", "linear", "importance"], default="center-out")
args = p.parse_args()

mf = load_mask_file(args.mask)
h5, table_csv = Path(args.out + ".h5"), Path(args.out + ".csv")
table = export_sequence(mf, h5, format="ismrmrd", order=args.order)
export_sequence(mf, table_csv, format="csv", order=args.order)

back = read_sequence_template(h5)  # the mask as the scanner template encodes it
assert np.array_equal(back.mask, mf.mask) and back.num_low_frequencies == mf.num_low_frequencies
with open(table_csv, newline="") as f:
    rows = list(csv.DictReader(f))
assert sorted(int(r["ky"]) for r in rows) == np.flatnonzero(mf.mask).tolist()

print(f"{h5}: {len(table)} readouts ({int(table['calibration'].sum())} calibration), R = {back.acceleration:g}")
print(f"{table_csv}: first readouts (order, ky, ky_from_centre, calibration):")
for r in rows[:5]:
    print(f"  {r['order']:>3} {r['ky']:>4} {r['ky_from_centre']:>4} {r['calibration']}")
