"""``fastmri-diffmask demo``: the main job on the embedded default, in about ten minutes on 2 cores.

Generates the embedded data (if missing), learns line masks at R = 4 and 8 with the shipped prior,
compares them with fastMRI's equispaced and random masks and a variable-density random mask under
DPS and BART ``pics -l1`` on held-out slices, prints the summary and writes the report.
The settings are ``recon_configs/demo.yaml`` (trimmed: few slices, few steps); the full study is
``recon_configs/study_128.yaml``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .main import add_device_argument


def register(sub) -> None:
    p = sub.add_parser("demo", help="learn masks on the embedded data and compare them (the main job)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--data", default=None, help="data folder (default: the config's; generated if missing)")
    p.add_argument("--num-slices", type=int, default=None, help="test slices (default: the config's)")
    add_device_argument(p)
    p.set_defaults(func=run)


def demo_config_path() -> Path:
    return Path(str(resources.files("fastmri_diffmask.compare").joinpath("demo.yaml")))


def run(args) -> int:
    from ..compare.config import load_config
    from .compare import run_config

    cfg = load_config(demo_config_path())
    if args.data:
        cfg.data = args.data
    if args.num_slices:
        cfg.num_slices = args.num_slices
    return run_config(cfg, Path(args.out), device=args.device)
