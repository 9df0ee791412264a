"""Regenerate fastmri_diffmask/data/colin27_axial_128.npz from Debian's mricron-data.

Source: /usr/share/mricron/templates/ch2.nii.gz, the Colin27 single-subject T1 head (Holmes et al.
1998), 181x217x181 at 1 mm, shipped by Debian's `mricron-data` (BSD-3). Usage:

    apt-get install -y mricron-data && pip install nibabel
    python scripts/make_embedded_data.py [--src PATH] [--out PATH] [--size 128]

Each axial slice is padded to a square field of view (217 mm), anti-alias resized to size^2,
oriented anterior-up, stored as uint16 (0..65535 over the volume's range). Slices with almost no
tissue are dropped. The slice preparation is `fastmri_diffmask.magnitude.load_magnitude_slices`,
which `fastmri-diffmask make-data --from` applies to any other image or volume.
"""

import argparse
from pathlib import Path

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default="/usr/share/mricron/templates/ch2.nii.gz")
    p.add_argument("--out", default=str(Path(__file__).parents[1] / "fastmri_diffmask/data/colin27_axial_128.npz"))
    p.add_argument("--size", type=int, default=128)
    a = p.parse_args()
    from fastmri_diffmask.magnitude import load_magnitude_slices

    slices, index = load_magnitude_slices(a.src, a.size, axis=2)  # axial slices of the RAS volume
    arr = np.round(slices / slices.max() * 65535).astype(np.uint16)
    np.savez_compressed(a.out, slices=arr, z_index=np.asarray(index, np.int16),
                        source=np.asarray("Colin27 ch2.nii.gz (mricron-data, BSD-3)"))
    print(f"wrote {a.out}: {arr.shape[0]} axial slices of {a.size}x{a.size} (z {index[0]}..{index[-1]})")


if __name__ == "__main__":
    main()
