"""Figures of a comparison study: mask gallery, reconstruction panels with error maps, PSNR/SSIM vs R."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..utils import atomic_path


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_all(out: Path, rows: list[dict], reference: str, targets: np.ndarray | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = out / "figures"
    accels = sorted({r["acceleration"] for r in rows})
    masks = sorted({r["mask"] for r in rows}, key=lambda m: (m != reference, m))
    methods = sorted({r["method"] for r in rows})

    # mask gallery: one row per R, one column per mask (seed 0)
    fig, axes = plt.subplots(len(accels), len(masks), figsize=(2 * len(masks), 2 * len(accels)), squeeze=False)
    for i, r in enumerate(accels):
        for j, m in enumerate(masks):
            ax = axes[i, j]
            ax.set_axis_off()
            npz = next(iter(sorted((out / "cells").glob(f"R{r:g}_{m}_s0_*.npz"))), None)
            if npz is not None:
                ax.imshow(np.load(npz)["mask"], cmap="gray", interpolation="nearest")
            ax.set_title(f"{m}\nR={r:g}", fontsize=8)
    fig.tight_layout()
    _save(fig, fig_dir / "masks.png")
    plt.close(fig)

    # quality against R
    stats = defaultdict(list)
    for r in rows:
        stats[(r["method"], r["mask"], r["acceleration"])].append((r["psnr"], r["ssim"]))
    fig, axes = plt.subplots(2, len(methods), figsize=(3.6 * len(methods), 6), squeeze=False)
    for j, meth in enumerate(methods):
        for m in masks:
            xs = [r for r in accels if (meth, m, r) in stats]
            if not xs:
                continue
            for k in range(2):
                ys = [np.mean([v[k] for v in stats[(meth, m, r)]]) for r in xs]
                axes[k, j].plot(xs, ys, "o-", label=m, lw=2.5 if m == reference else 1)
        axes[0, j].set_title(meth)
        axes[0, j].set_ylabel("PSNR dB")
        axes[1, j].set_ylabel("SSIM")
        axes[1, j].set_xlabel("acceleration R")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, fig_dir / "quality_vs_R.png")
    plt.close(fig)

    # reconstruction panels: per R, masks x methods, first slice, with error maps
    if targets is None:
        return
    gt = targets[0]
    vmax = float(np.percentile(gt, 99.5))
    for r in accels:
        fig, axes = plt.subplots(2 * len(methods), len(masks) + 1, figsize=(1.9 * (len(masks) + 1), 3.8 * len(methods)),
                                 squeeze=False)
        for i, meth in enumerate(methods):
            axes[2 * i, 0].imshow(gt, cmap="gray", vmin=0, vmax=vmax)
            axes[2 * i, 0].set_title("target", fontsize=8)
            for j, m in enumerate(masks):
                npz = out / "cells" / f"R{r:g}_{m}_s0_{meth}.npz"
                if not npz.is_file():
                    continue
                rec = np.load(npz)["recon"][0].astype(np.float32)
                axes[2 * i, j + 1].imshow(rec, cmap="gray", vmin=0, vmax=vmax)
                axes[2 * i, j + 1].set_title(f"{m}\n{meth}", fontsize=7)
                axes[2 * i + 1, j + 1].imshow(np.abs(rec - gt), cmap="inferno", vmin=0, vmax=0.25 * vmax)
            for ax in axes[2 * i:2 * i + 2].flat:
                ax.set_axis_off()
        fig.suptitle(f"R = {r:g} (bottom rows: |error| x4)", fontsize=9)
        fig.tight_layout()
        _save(fig, fig_dir / f"recon_R{r:g}.png")
        plt.close(fig)
