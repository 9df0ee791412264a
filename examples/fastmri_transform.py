"""Use a learned mask file inside fastMRI's own data pipeline.

``LearnedDiffusionMaskFunc`` is a ``fastmri.data.subsample.MaskFunc``: it goes into fastMRI's
``VarNetDataTransform`` (or ``UnetDataTransform``) and ``SliceDataset`` unchanged, so any fastMRI
training or evaluation script can read learned masks.

    python examples/learn_mask.py                      # writes runs/examples/learned_R8.safetensors
    python examples/fastmri_transform.py --data runs/data/test --mask runs/examples/learned_R8.safetensors
"""

import argparse

import torch
from fastmri.data import SliceDataset
from fastmri.data.transforms import VarNetDataTransform

from fastmri_diffmask import LearnedDiffusionMaskFunc

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="runs/data/test", help="a folder of fastMRI multi-coil h5 files")
p.add_argument("--mask", default="runs/examples/learned_R8.safetensors", help="a learned mask file")
p.add_argument("--mode", choices=["fixed", "sampled"], default="fixed",
               help="the file's binary mask, or a fresh budget-exact draw per volume")
args = p.parse_args()

mask_func = LearnedDiffusionMaskFunc(args.mask, mode=args.mode)
dataset = SliceDataset(args.data, challenge="multicoil", transform=VarNetDataTransform(mask_func=mask_func))
loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False)

for i, sample in enumerate(loader):
    # sample.mask: (1, 1, 1, W, 1) over the columns; masked_kspace: (1, coils, H, W, 2)
    columns = sample.mask[0, 0, 0, :, 0]
    sampled = sample.masked_kspace.abs().sum(dim=(0, 1, 2, 4)) > 0
    assert torch.equal(sampled, columns > 0), "k-space outside the mask must be zero"
    print(f"{sample.fname[0]} slice {int(sample.slice_num)}: {int(columns.sum())} of {columns.numel()} columns, "
          f"centre {int(sample.num_low_frequencies)}, target {tuple(sample.target.shape[-2:])}")
    if i == 3:
        break
print(f"{len(dataset)} slices served by {mask_func!r}")
