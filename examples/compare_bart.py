"""Reconstruct a few test slices with a learned mask and fastMRI's equispaced mask under BART's
``pics -l1`` (L1-wavelet compressed sensing) and score them with fastMRI's metrics.

    python examples/compare_bart.py --data runs/data --mask runs/examples/learned_R8.safetensors
"""

import argparse

import numpy as np

from fastmri_diffmask import load_mask_file
from fastmri_diffmask.dataset import load_slices
from fastmri_diffmask.masks.select import make_mask
from fastmri_diffmask.metrics import score
from fastmri_diffmask.recon.classical import reconstruct
from fastmri_diffmask.recon.espirit import espirit_maps
from fastmri_diffmask.recon.run import default_lamda

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="runs/data", help="make-data output (its test/ split is used)")
p.add_argument("--mask", default="runs/examples/learned_R8.safetensors", help="a learned mask file")
p.add_argument("--num-slices", type=int, default=3)
args = p.parse_args()

mf = load_mask_file(args.mask)
test = load_slices(args.data, "test", num_slices=args.num_slices, sens_backend="none")
shape = tuple(test.kspace.shape[-2:])
r, centre = mf.acceleration, mf.num_low_frequencies
masks = {"learned": make_mask("learned_diffusion", shape, r, mask_file=mf),
         "equispaced": make_mask("equispaced_fraction", shape, r, num_low_frequencies=centre)}

print(f"R = {r:g}, centre {centre} lines, {len(test.fnames)} test slices, BART pics -l1 -r {default_lamda(r)}")
for name, m in masks.items():
    scores = []
    for k, target in zip(test.kspace.numpy(), test.target.numpy()):
        masked = k * m.mask  # what the scanner would acquire
        maps = espirit_maps(masked, num_low_frequencies=m.num_low_frequencies, backend="bart")
        image = reconstruct(masked, m.mask, "bart-l1", sens_maps=maps, lamda=default_lamda(r))
        scores.append(score(target, np.abs(image)))
    psnr, ssim = (np.mean([s[key] for s in scores]) for key in ("psnr", "ssim"))
    print(f"{name:>10}: {int(m.mask[0].sum())} lines (R = {m.acceleration:.2f})  PSNR {psnr:.2f} dB  SSIM {ssim:.3f}")
