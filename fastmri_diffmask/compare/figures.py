"""Figures of a comparison study: mask gallery, reconstruction panels with error maps, PSNR/SSIM vs R.

Reconstruction panels (:func:`error_map_grid`) put each reconstruction above its error map
``|recon - target|``, one column per method, the target in the first column. Every error map of a
block (one target slice) shares one colour scale, ``0`` to :data:`ERROR_FRACTION` times the
target's 99.5th percentile (the grey scale's white), printed on the block's colour bar and in its
row label, so a darker map is a smaller error whichever method made it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..utils import atomic_path


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_all(out: Path, rows: list[dict], reference: str, targets: np.ndarray | None) -> dict:
    """Write ``OUT/figures/*.png``; returns the figures by file stem (``masks``, ``quality_vs_R``,
    ``recon_R<R>``; the last only with ``targets``), already closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = out / "figures"
    figs = {}
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
    figs["masks"] = fig

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
    figs["quality_vs_R"] = fig

    # reconstruction panels: per R, one block (recon row over error row) per mask, methods as
    # columns, the first slice; its PSNR / SSIM from the rows in each title
    if targets is None:
        return figs
    gt = np.asarray(targets[0], dtype=np.float32)
    first = {}
    for r in rows:  # rows are in slice order: a seed-0 cell's first row is its stored recon[0]
        if int(r["seed"]) == 0:
            first.setdefault((r["acceleration"], r["mask"], r["method"]), r)
    for r in accels:
        blocks = []
        for m in masks:
            recons, titles = {}, {}
            for meth in methods:
                npz = out / "cells" / f"R{r:g}_{m}_s0_{meth}.npz"
                if not npz.is_file():
                    continue
                recons[meth] = np.load(npz)["recon"][0].astype(np.float32)
                row = first.get((r, m, meth))
                titles[meth] = f"{m} | {meth}" + (f"\n{row['psnr']:.2f} dB / {row['ssim']:.3f}" if row else "")
            blocks.append({"target": gt, "recons": recons, "titles": titles, "label": m})
        fig = error_map_grid(blocks, methods, f"R = {r:g}, slice 0 of the study", fig_dir / f"recon_R{r:g}.png")
        figs[f"recon_R{r:g}"] = fig
    return figs


#: Error maps run from 0 to this fraction of the target's 99.5th percentile (the grey scale's top).
ERROR_FRACTION = 0.25


def error_map_grid(blocks: list[dict], columns: list[str], title: str, path: Path | None = None):
    """Reconstructions over their error maps ``|recon - target|``, one column per entry of ``columns``.

    ``blocks``: one per target slice, each ``{"target": (H, W), "recons": {column: (H, W)},
    "titles": {column: str}, "label": str}``; a column missing from ``recons`` is left blank. Each
    block is two rows: the target and the reconstructions (grey, 0 to the target's 99.5th
    percentile ``p``), then the error maps (inferno, 0 to ``ERROR_FRACTION * p``, one scale for the
    whole block, on its colour bar). Writes ``path`` (PNG) when given and returns the closed
    Figure (its ``axes`` hold ``2 * len(blocks) * (len(columns) + 1)`` panels and one colour bar
    per block).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = len(columns) + 1
    fig, axes = plt.subplots(2 * len(blocks), ncol, figsize=(2.0 * ncol + 0.6, 4.5 * len(blocks)), squeeze=False)
    for b, block in enumerate(blocks):
        gt = np.abs(np.asarray(block["target"], dtype=np.float32))
        top = float(np.percentile(gt, 99.5)) or float(gt.max()) or 1.0
        emax = ERROR_FRACTION * top
        img_row, err_row = axes[2 * b], axes[2 * b + 1]
        img_row[0].imshow(gt, cmap="gray", vmin=0, vmax=top)
        img_row[0].set_title(f"target\n{block.get('label', '')}", fontsize=7)
        err_row[0].text(0.5, 0.5, f"|recon - target|\n0 to {emax:.3g}\n= {ERROR_FRACTION:.0%} of the\ntarget's p99.5",
                        ha="center", va="center", fontsize=7, transform=err_row[0].transAxes)
        im = None
        for j, col in enumerate(columns, start=1):
            rec = block["recons"].get(col)
            if rec is None:
                continue
            rec = np.abs(np.asarray(rec, dtype=np.float32))
            img_row[j].imshow(rec, cmap="gray", vmin=0, vmax=top)
            img_row[j].set_title(block.get("titles", {}).get(col, col), fontsize=7)
            im = err_row[j].imshow(np.abs(rec - gt), cmap="inferno", vmin=0, vmax=emax)
        for ax in (*img_row, *err_row):
            ax.set_axis_off()
        if im is not None:  # beside the last panel, outside it, so no panel shrinks
            cb = fig.colorbar(im, cax=err_row[-1].inset_axes([1.04, 0.0, 0.06, 1.0]))
            cb.ax.tick_params(labelsize=6)
    fig.suptitle(f"{title}; error maps share one scale per block, 0 to {ERROR_FRACTION:.0%} of the target's "
                 "99.5th percentile", fontsize=8)
    if path is not None:
        _save(fig, Path(path))
    plt.close(fig)
    return fig
