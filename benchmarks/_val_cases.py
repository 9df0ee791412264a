"""What the validation studies share: the (R, mask, ESPIRiT maps) cases of the tuning scripts (``tune_recon.py``,
``tune_dps.py``, ``tune_dds.py``) and the setting of the mask-judging studies (``judge_study.py``, ``sampling_study.py``).

The study's fixed line masks (seed 0) with centres of 16 (R <= 4) and 10 (R > 4) lines on the
loaded slices, and ESPIRiT (BART) maps from each mask's own undersampled centre.
"""

import numpy as np


def load_cases(data_dir: str, split: str, num_slices: int, accelerations, masks):
    """``(data, [(R, mask_type, MaskSample, maps)])`` for every R and mask type."""
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.masks.select import make_mask
    from fastmri_diffmask.recon.run import sens_maps_for

    data = load_slices(data_dir, split, num_slices=num_slices, sens_backend="none")
    k = data.kspace.numpy()
    cases = []
    for r in accelerations:
        nlf = 16 if r <= 4 else 10
        for mt in masks:
            m = make_mask(mt, k.shape[-2:], r, nlf, seed=0)
            maps = np.stack([sens_maps_for(k[i] * m.mask, None, nlf, "espirit-bart") for i in range(len(k))])
            cases.append((r, mt, m, maps))
    return data, cases


def add_case_arguments(parser, out: str, num_slices: int = 4) -> None:
    """The options every tuning script shares: data, split, slices, accelerations, masks, prior, out."""
    parser.add_argument("--data", default="runs/data")
    parser.add_argument("--split", default="val")
    parser.add_argument("--num-slices", type=int, default=num_slices)
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4, 8])
    parser.add_argument("--masks", nargs="+", default=["equispaced_fraction", "vd_random"])
    parser.add_argument("--prior", default="default")
    parser.add_argument("--out", default=out)


def mean_scores(target, recon) -> dict:
    """Mean PSNR and SSIM (fastMRI's definitions) of magnitude reconstructions over the slices."""
    from fastmri_diffmask.metrics import score

    sc = [score(target[i], recon[i]) for i in range(len(recon))]
    return {"psnr": float(np.mean([s["psnr"] for s in sc])), "ssim": float(np.mean([s["ssim"] for s in sc])),
            "worst_psnr": float(min(s["psnr"] for s in sc))}


def case_tensors(kspace, mask_sample, maps):
    """``(mask (1, 1, H, W), masked k-space, maps)`` as torch tensors for the samplers."""
    import torch

    mask = torch.from_numpy(np.ascontiguousarray(mask_sample.mask, np.float32))[None, None]
    return mask, torch.from_numpy(kspace * mask_sample.mask), torch.from_numpy(np.ascontiguousarray(maps))


def line_mask_judging(data_dir: str, mask_file: str, prior: str = "default"):
    """What the mask-judging studies (``judge_study.py``, ``sampling_study.py``) share: the mask
    file, the validation slices' k-space and targets, ESPIRiT (BART) maps from the file's fixed
    centre, the shipped prior and a ``BernoulliMask`` holding the file's learned logits (so its
    ``probabilities()`` and ``flattened(w)`` are those learn-mask drew its candidates from); the
    prior is ``prior`` (a shipped name or a file).
    Returns ``(mask_file, kspace, target, maps, prior, bernoulli_mask)``."""
    import torch

    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.masks.bernoulli import BernoulliMask
    from fastmri_diffmask.masks.file import load_mask_file
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.recon.run import sens_maps_for

    mf = load_mask_file(mask_file)
    data = load_slices(data_dir, "val", sens_backend="none")
    k, target = data.kspace.numpy(), data.target.numpy()
    shape = (k.shape[-1],) if mf.kind == "line" else tuple(k.shape[-2:])  # point masks: the whole ky-kz plane
    bm = BernoulliMask(shape, mf.acceleration, mf.num_low_frequencies, kind=mf.kind, logits=torch.as_tensor(mf.logits))
    centre = bm.fixed.numpy().astype(np.float32)
    maps = np.stack([sens_maps_for(k[i] * centre, None, mf.num_low_frequencies, "espirit-bart") for i in range(len(k))])
    return mf, k, target, maps, load_prior(prior, device="cpu"), bm


def dds_psnr(prior, kspace, target, maps, mask, idx, steps: int) -> float:
    """Mean PSNR of DDS (``steps`` steps, seed 0, ``DDS_DEFAULTS`` otherwise) on slices ``idx`` with a
    0/1 line mask (shape ``(W,)``) or point mask (``(H, W)``)."""
    import torch

    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.sample.dds import dds_reconstruct

    mask = np.asarray(mask, np.float32)
    km = torch.from_numpy(mask).view(1, 1, *((1,) * (2 - mask.ndim)), *mask.shape)
    rec = dds_reconstruct(prior, torch.from_numpy(kspace[idx]) * km, km, torch.from_numpy(maps[idx]), steps=steps,
                          generator=torch.Generator().manual_seed(0), progress=False)
    return float(np.mean([score(target[i], rec[j].abs().numpy())["psnr"] for j, i in enumerate(idx)]))
