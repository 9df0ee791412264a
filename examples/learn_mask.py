"""Learn a line sampling mask with the library API, in a few lines.

Uses the shipped diffusion prior when it is installed, else a Gaussian prior fitted to the
training split (exact Tweedie denoiser, seconds to fit), and writes a mask file that every other
tool reads (``recon --learned-mask``, ``LearnedDiffusionMaskFunc``, ``export-sequence``).

    fastmri-diffmask make-data --out runs/data
    python examples/learn_mask.py --data runs/data --acceleration 8 --out runs/examples/learned_R8.safetensors
"""

import argparse

import torch

from fastmri_diffmask import load_mask_file, load_prior, save_mask_file
from fastmri_diffmask.dataset import load_slices
from fastmri_diffmask.learn.loop import LearnConfig, default_num_low_frequencies, export_mask, learn_mask
from fastmri_diffmask.physics import percentile_scale
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.prior.weights import default_prior_path

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="runs/data", help="make-data output with train/ and val/")
p.add_argument("--acceleration", type=float, default=8.0)
p.add_argument("--steps", type=int, default=100, help="Adam iterations on the mask logits")
p.add_argument("--out", default="runs/examples/learned_R8.safetensors")
args = p.parse_args()

torch.manual_seed(0)
train = load_slices(args.data, "train")  # fully sampled slices; the file's true coil maps
val = load_slices(args.data, "val")
if default_prior_path().is_file():
    prior = load_prior("default", device="cpu")
else:  # no shipped weights: a Gaussian prior of the scaled training images
    images = train.images
    prior = GaussianPrior.fit(images / percentile_scale(images))

width = train.kspace.shape[-1]
centre = default_num_low_frequencies(width, args.acceleration)
config = LearnConfig(steps=args.steps, batch=2, lr=0.01)
mask, history = learn_mask(prior, train, val, "line", args.acceleration, centre, config, progress=False)

binary = export_mask(mask, history, "topk")  # exactly round(W / R) lines, the centre included
mf = mask.to_mask_file(mask=binary, metadata={"prior": {"id": getattr(prior, "prior_id", "gaussian")},
                                              "data": args.data, "steps": args.steps})
save_mask_file(args.out, mf)

check = load_mask_file(args.out)
print(f"wrote {args.out}: {check.num_sampled} of {width} lines (R = {check.achieved_acceleration:.2f}), "
      f"centre {check.num_low_frequencies}, best validation {history['best']}")
print("sampled columns:", check.mask.nonzero()[0].tolist())
