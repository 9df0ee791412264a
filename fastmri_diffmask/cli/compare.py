"""``fastmri-diffmask compare``: learned masks against fixed masks under several reconstructors."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError
from .main import add_device_argument


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare masks x reconstructors on held-out slices (config-driven)",
                       description="Run a study from a YAML config (see recon_configs/): resumable (finished cells "
                                   "are skipped), shardable (--shard i/n or torchrun ranks), then merged into "
                                   "results.csv, summary.md and figures/.")
    p.add_argument("--config", required=True, help="study config, e.g. recon_configs/demo.yaml")
    p.add_argument("--out", help="output folder (default: the config's 'out')")
    p.add_argument("--shard", help="run only cells i, i+n, ... as 'i/n' (default: torchrun's RANK/WORLD_SIZE, else all)")
    p.add_argument("--merge-only", action="store_true", help="only merge finished cells into the report")
    p.add_argument("--no-merge", action="store_true", help="run cells without writing the report (shards)")
    p.add_argument("--reference", help="mask the report's paired differences are taken against (default: the "
                                       "config's reference), e.g. start with --merge-only for learned minus start")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..compare.config import load_config

    cfg = load_config(args.config)
    if args.reference is not None:
        names = [m.name for m in cfg.masks]
        if args.reference not in names:
            raise UserError(f"--reference {args.reference!r} is not a mask of {args.config}; its masks: {', '.join(names)}")
        cfg.reference = args.reference
    return run_config(cfg, Path(args.out or cfg.out), shard=args.shard, merge_only=args.merge_only,
                      no_merge=args.no_merge, device=args.device)


def run_config(cfg, out: Path, shard=None, merge_only=False, no_merge=False, device="auto") -> int:
    from ..compare.engine import run_study
    from ..compare.report import write_report
    from ..dataset import load_slices

    if shard is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        shard = f"{os.environ.get('RANK', '0')}/{os.environ['WORLD_SIZE']}"
    if not merge_only:
        run_study(cfg, out, shard=shard, device=device)
    if no_merge or (shard and not merge_only):
        print(f"cells written to {out / 'cells'}; merge with: fastmri-diffmask compare --config ... --out {out} --merge-only")
        return 0
    if not any((out / "cells").glob("*.json")):
        raise UserError(f"no finished cells in {out / 'cells'} to merge; run the study (or its shards) first")
    targets = load_slices(cfg.data, cfg.split, num_slices=2, sens_backend="none", readout_crop=cfg.readout_crop,
                          size="most-common", notes=False).target.numpy()  # the study printed its notes
    rep = write_report(out, cfg.reference, targets)
    if rep:
        print(rep["summary"])
        print(f"report: {out / 'summary.md'}, {out / 'results.csv'}, figures in {out / 'figures'}")
    return 0
