"""``fastmri-diffmask recon``: reconstruct and score a folder of fastMRI files."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import h5py
import numpy as np

from ..errors import UserError
from ..prior import PRECISIONS
from .main import add_device_argument


def register(sub) -> None:
    from ..recon.run import METHODS, SENS_CHOICES

    p = sub.add_parser("recon", help="reconstruct undersampled fastMRI files and score them",
                       description="Undersample each file with a mask, reconstruct, write fastMRI-layout "
                                   "reconstructions and per-slice metrics (CSV + JSON).")
    p.add_argument("--data", required=True, help="folder of fastMRI multi-coil h5 files (or a make-data output)")
    p.add_argument("--split", default="test", help="sub-folder of --data (default test)")
    p.add_argument("--mask-type", required=True, help="random | equispaced | equispaced_fraction | magic | "
                   "magic_fraction | vd_random | poisson_sigpy | poisson_bart | learned_diffusion")
    p.add_argument("--learned-mask", help="mask file for --mask-type learned_diffusion")
    p.add_argument("--acceleration", type=float, required=True)
    p.add_argument("--num-low-frequencies", type=int, help="fully sampled centre width (default fastMRI's fraction)")
    p.add_argument("--method", required=True, help=" | ".join(METHODS))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sens-maps", default="espirit-bart", help=" | ".join(SENS_CHOICES) + " (default espirit-bart)")
    p.add_argument("--lamda", type=float, help="CS-L1 regularisation (default tuned per acceleration)")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--prior", default="default", help="DPS / DDS prior: default or a weights file")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default 100 for dps, 15 for dds; all sampler defaults: sample/defaults.py)")
    p.add_argument("--zeta", type=float, help="DPS likelihood step (default tuned per acceleration)")
    p.add_argument("--churn", type=float, default=None, help="EDM S_churn (default 40 for dps, 0 for dds)")
    p.add_argument("--dc-weight", type=float, default=None,
                   help="proximal data-consistency weight mu: DPS takes one every --dc-every steps (default 0.03, "
                        "chosen on validation; with --dc-every 0 one final step, 0 = none: the paper's plain DPS); "
                        "DDS takes one every step (default 0.01)")
    p.add_argument("--dc-every", type=int, default=None,
                   help="DPS: enforce the data (CG, weight --dc-weight, default 0.03) every this many steps "
                        "during sampling, the last step included (default 5; 0: only the final step)")
    p.add_argument("--cg-iters", type=int, default=5, help="DDS: conjugate-gradient iterations per step (default 5)")
    p.add_argument("--init", "--dds-init", dest="dds_init", default=None,
                   help="DPS / DDS: start estimate noise | zero-filled | sense | l1 (x_init + sigma_start n; "
                        "sample/warm_start.py; default sense for both)")
    p.add_argument("--sigma-start", type=float, default=None,
                   help="DPS / DDS: first noise level of the schedule (default 0.5; with --init noise alone: sigma_max = 80)")
    p.add_argument("--dds-eta", type=float, default=None,
                   help="DDS: fresh-noise fraction of each step in [0, 1] (default 1; 0: the deterministic step)")
    p.add_argument("--sigma-min", type=float, default=None,
                   help="DDS: last noise level of the schedule (default: by the acceleration, 0.005 at R <= 4 "
                        "rising to 0.02 at R >= 12, chosen on validation; 0.002: EDM's, the sampler before session 16)")
    p.add_argument("--batch", type=int, default=4, help="DPS / DDS slices per batch")
    p.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="DPS / DDS: the network's arithmetic (default float32; bfloat16 about 2x faster on CPUs with "
                        "bfloat16 units, same quality: BENCHMARKS.md)")
    p.add_argument("--num-slices", type=int, help="stop after this many slices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--readout-crop", default="auto", choices=["auto", "off"],
                   help="auto (default): crop an oversampled readout (header encodedSpace x > reconSpace x) to the "
                        "reconSpace rows in image space before masks, maps and reconstruction; off: the stored grid")
    add_device_argument(p)
    p.set_defaults(func=run)


def _check_files(files, num_slices: int | None, readout_crop: str = "auto") -> list[tuple[Path, tuple, int]]:
    """Read and validate every file the run will use (all of them, or the first ones holding
    ``num_slices`` slices), one at a time: ``(path, kspace shape, slices used)`` each. Nothing is
    kept in memory and nothing is written, so a bad file anywhere fails before any output."""
    from ..dataset import read_volume

    plan, left, crops = [], num_slices, set()
    for path in files:
        vol = read_volume(path, readout_crop)  # raises UserError with one line on bad content
        shape = vol["kspace"].shape
        if vol["readout"][1] < vol["readout"][0]:
            crops.add(vol["readout"])
        n = shape[0] if left is None else min(left, shape[0])
        plan.append((path, shape, n))
        if left is not None:
            left -= n
            if left <= 0:
                break
    if crops:
        print("recon: readout oversampled; k-space cropped in image space to the reconSpace rows ("
              + ", ".join(f"{a} -> {b}" for a, b in sorted(crops)) + "); --readout-crop off keeps the full readout",
              file=sys.stderr)
    return plan


def _common_crop(recon: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop both to their common size: the target's (reconSpace, smaller than the
    k-space matrix in fastMRI files), or the image's where a target is wider than the image."""
    from ..recon.run import center_crop

    shape = tuple(min(a, b) for a, b in zip(recon.shape[-2:], target.shape[-2:]))
    return center_crop(recon, shape), center_crop(target, shape)


def run(args) -> int:
    """Validate every file, then reconstruct into a hidden staging folder inside ``--out`` and
    move the results into place only when all of them (and the metrics) are done: a failure at
    any point leaves no ``reconstructions/*.h5`` or metrics file behind."""
    import os
    import shutil
    import tempfile

    from tqdm import tqdm

    from ..dataset import acquired_range_of, list_h5, read_volume
    from ..masks.select import make_mask
    from ..metrics import score, worst_slice
    from ..recon.run import DIFFUSION_METHODS, METHODS, SENS_CHOICES, ReconSettings, reconstruct_slices, sens_maps_for, volume_seed
    from ..simulate import ifft2c_np

    if args.method not in METHODS:
        raise UserError(f"unknown method {args.method!r}; use one of {', '.join(METHODS)}")
    if args.sens_maps not in SENS_CHOICES:
        raise UserError(f"unknown --sens-maps {args.sens_maps!r}; use one of {', '.join(SENS_CHOICES)}")
    if (args.steps is not None and args.steps < 1) or args.batch < 1 or args.cg_iters < 1:
        raise UserError("--steps, --batch and --cg-iters must be >= 1")
    if args.num_slices is not None and args.num_slices < 1:
        raise UserError(f"--num-slices must be >= 1, got {args.num_slices}")
    if args.churn is not None and args.churn < 0:
        raise UserError(f"--churn must be >= 0, got {args.churn}")
    if args.dc_every is not None and (args.dc_every < 0 or args.method != "dps"):
        raise UserError(f"--dc-every is a DPS option and must be >= 0 (0: off), got {args.dc_every} with --method {args.method}")
    if args.dc_weight is not None and not (args.dc_weight > 0 or (args.dc_weight == 0 and args.method == "dps")):
        raise UserError(f"--dc-weight must be > 0 (DPS: 0 = no data-consistency step, with --dc-every 0), got {args.dc_weight}")
    warm = {"--init": args.dds_init, "--sigma-start": args.sigma_start}
    if args.method not in DIFFUSION_METHODS and any(v is not None for v in warm.values()):
        raise UserError(f"{', '.join(k for k, v in warm.items() if v is not None)}: DPS / DDS options; "
                        "use --method dps or dds")
    if args.method != "dds" and args.dds_eta is not None:
        raise UserError("--dds-eta: a DDS option; use --method dds")
    if args.sigma_min is not None and args.method != "dds":
        raise UserError(f"--sigma-min is a DDS option; use --method dds (got --method {args.method})")
    from ..sample.defaults import check_dps_consistency, resolve_sampler_options
    from ..sample.schedule import check_sigma_min
    from ..sample.warm_start import check_eta, check_warm_start

    sampler = {}
    try:
        check_eta(args.dds_eta)
        if args.method in DIFFUSION_METHODS:
            given = {"sigma_min": args.sigma_min} if args.method == "dds" else {}
            sampler = resolve_sampler_options(args.method, init=args.dds_init, sigma_start=args.sigma_start, **given)
            end = check_sigma_min(sampler["sigma_min"]) if args.method == "dds" else 0.002
            check_warm_start(sampler["init"], sampler["sigma_start"], end)
    except UserError as e:
        raise UserError(f"--init / --sigma-start / --sigma-min / --dds-eta: {e}") from None
    if args.method == "dps":
        try:
            check_dps_consistency(resolve_sampler_options("dps", dc_weight=args.dc_weight, dc_every=args.dc_every))
        except UserError as e:
            raise UserError(f"--dc-weight / --dc-every: {e}") from None
    if args.method in ("bart-l1",) or args.sens_maps == "espirit-bart" or sampler.get("init") == "l1":
        from ..io.bart import require_bart

        require_bart()
    files = list_h5(args.data, args.split)
    s = ReconSettings(method=args.method, lamda=args.lamda, max_iter=args.max_iter, steps=args.steps, zeta=args.zeta,
                      churn=args.churn, dc_weight=args.dc_weight, dc_every=args.dc_every, cg_iters=args.cg_iters, batch=args.batch,
                      init=args.dds_init, sigma_start=args.sigma_start, eta=args.dds_eta, sigma_min=args.sigma_min,
                      sens=args.sens_maps, seed=args.seed, device=args.device)
    plan = _check_files(files, args.num_slices, args.readout_crop)  # every file used is validated before anything is written
    masks = {p.name: make_mask(args.mask_type, shape[-2:], args.acceleration, args.num_low_frequencies,
                               seed=volume_seed(p.name, args.seed), mask_file=args.learned_mask,
                               acquired=acquired_range_of(p)) for p, shape, _ in plan}
    if args.method in DIFFUSION_METHODS:
        from ..prior.weights import load_prior

        s.prior = load_prior(args.prior, device=args.device, precision=args.precision)
    out = Path(args.out)
    made_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".recon-", suffix=".tmp", dir=out))
    ok = False
    try:
        rows = []
        with tqdm(total=sum(n for _, _, n in plan), desc=f"recon {args.method}", unit="slice") as bar:
            for path, _, n in plan:
                vol = read_volume(path, args.readout_crop)
                k = vol["kspace"][:n]
                m = masks[path.name]
                maps = np.stack([sens_maps_for(k[i] * m.mask, None if vol["sens_maps"] is None else vol["sens_maps"][i],
                                               m.num_low_frequencies, args.sens_maps, args.device) for i in range(len(k))])
                recon = reconstruct_slices(k, m.mask, maps, m.acceleration, s)
                target = vol["target"][:n] if vol["target"] is not None else np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(1))
                recon, target = _common_crop(recon.astype(np.float32), target)
                scores = [score(target[i], recon[i]) for i in range(len(recon))]  # before the file is written
                (stage / "reconstructions").mkdir(exist_ok=True)
                with h5py.File(stage / "reconstructions" / path.name, "w") as f:
                    f.create_dataset("reconstruction", data=recon)
                    f.attrs.update({"mask_type": args.mask_type, "acceleration": m.acceleration, "method": args.method,
                                    "num_low_frequencies": m.num_low_frequencies})
                    f.create_dataset("mask", data=m.mask)
                rows += [{"fname": path.name, "slice": i, "mask_type": args.mask_type,
                          "acceleration": round(m.acceleration, 4), "method": args.method,
                          **{k_: round(v, 6) for k_, v in sc.items()}} for i, sc in enumerate(scores)]
                bar.update(len(recon))
        with open(stage / "metrics.csv", "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
        summary = {key: float(np.mean([r[key] for r in rows]))
                   for key in ("psnr", "ssim", "nmse", "psnr_paper", "ssim_paper", "bg_error")}
        worst = worst_slice(rows, ["psnr", "ssim", "bg_error"])  # next to the mean: one bad slice shows
        (stage / "metrics.json").write_text(json.dumps({"settings": {k_: v for k_, v in vars(args).items() if k_ != "func"},
                                                        "mean": summary, "worst": worst, "slices": rows}, indent=1))
        (out / "reconstructions").mkdir(exist_ok=True)
        for p in sorted((stage / "reconstructions").iterdir()):
            os.replace(p, out / "reconstructions" / p.name)
        for name in ("metrics.csv", "metrics.json"):
            os.replace(stage / name, out / name)
        ok = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not ok and made_out and not any(out.iterdir()):
            out.rmdir()  # the run made the folder; leave none behind either
    print(json.dumps({"slices": len(rows), **{k_: round(v, 4) for k_, v in summary.items()},
                      **{f"worst_{k_}": round(v, 4) for k_, v in worst.items()}}))
    return 0
