"""compare's reconstruction figures: each reconstruction has an error map |recon - target| beside
it, every error map of a slice on one colour scale, and the PNG is written; plus the held-out
benchmark's paired statistics against BART (benchmarks/heldout_subjects.py) on made-up rows."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmri_diffmask.compare import figures

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _images(rng, n=24):
    yy, xx = np.mgrid[:n, :n]
    gt = ((yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 3) ** 2).astype(np.float32)
    return gt, {m: gt + rng.normal(0, s, gt.shape).astype(np.float32) for m, s in (("a", 0.05), ("b", 0.2))}


def _error_panels(fig):
    """The axes that show an error map (inferno images), in drawing order."""
    return [ax for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "inferno"]


def test_error_map_grid_writes_png_with_one_error_map_per_reconstruction(tmp_path):
    rng = np.random.default_rng(0)
    blocks, columns = [], ["a", "b", "missing"]
    for k in range(2):
        gt, recons = _images(rng)
        gt *= k + 1  # a different scale per block
        recons = {m: v * (k + 1) for m, v in recons.items()}
        blocks.append({"target": gt, "recons": recons, "titles": {m: m for m in recons}, "label": f"slice {k}"})
    path = tmp_path / "grid.png"
    fig = figures.error_map_grid(blocks, columns, "test", path)
    assert path.read_bytes()[:8] == PNG
    # two rows per block, target column + one per method, and one colour bar per block
    assert len(fig.axes) == 2 * len(blocks) * (len(columns) + 1)
    errs = _error_panels(fig)
    assert len(errs) == sum(len(b["recons"]) for b in blocks)
    for b, block in enumerate(blocks):
        mine = errs[b * 2:(b + 1) * 2]
        top = np.percentile(block["target"], 99.5)
        # one scale for every method of the block: 0 to ERROR_FRACTION * the target's p99.5
        for ax in mine:
            assert ax.images[0].get_clim() == pytest.approx((0.0, figures.ERROR_FRACTION * top))
        for ax, m in zip(mine, ["a", "b"]):
            np.testing.assert_allclose(ax.images[0].get_array(), np.abs(block["recons"][m] - block["target"]), atol=1e-6)
    # one colour bar per block, an inset beside the block's last error map
    assert sum(len(ax.child_axes) for ax in fig.axes) == len(blocks)


def test_plot_all_recon_figure_has_error_maps_for_every_mask_and_method(tmp_path):
    """plot_all on a study's cell files: recon_R<R>.png holds an error map per (mask, method)."""
    rng = np.random.default_rng(1)
    masks, methods, accels = ["equi", "vd"], ["bart-l1", "dds", "zero-filled"], [4.0]
    gt, _ = _images(rng)
    cells = tmp_path / "cells"
    cells.mkdir()
    rows = []
    for r in accels:
        for m in masks:
            for meth in methods:
                rec = gt + rng.normal(0, 0.1, gt.shape)
                np.savez(cells / f"R{r:g}_{m}_s0_{meth}.npz", recon=rec[None].astype(np.float16),
                         mask=np.ones((1, gt.shape[1]), np.uint8))
                row = {"acceleration": r, "mask": m, "seed": 0, "method": meth, "fname": "f.h5", "slice": 0,
                       "psnr": 20.0, "ssim": 0.5}
                rows.append(row)
                (cells / f"R{r:g}_{m}_s0_{meth}.json").write_text(json.dumps({"rows": [row]}))
    figs = figures.plot_all(tmp_path, rows, "equi", gt[None])
    for r in accels:
        assert (tmp_path / "figures" / f"recon_R{r:g}.png").read_bytes()[:8] == PNG
        errs = _error_panels(figs[f"recon_R{r:g}"])
        assert len(errs) == len(masks) * len(methods)
        assert len({ax.images[0].get_clim() for ax in errs}) == 1  # one target slice: one scale


def test_heldout_summary_pairs_each_method_with_bart_per_slice():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import heldout_subjects as h
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rng = np.random.default_rng(2)
    base = rng.uniform(25, 30, 6)
    gain = {"bart-l1": np.zeros(6), "dds": np.full(6, 0.5), "dps": np.array([2, 2, 2, 2, 2, -1.5])}
    rows = [{"set": "s", "acceleration": 8.0, "method": m, "fname": f"f{i}", "slice": 0, "psnr": base[i] + g[i],
             "ssim": 0.8 + g[i] / 100, "bg_error": 0.01, "seconds": 1.0}
            for m, g in gain.items() for i in range(6)]
    out = {e["method"]: e for e in h.summarise(rows)}
    assert "d_psnr" not in out["bart-l1"]
    assert out["dds"]["d_psnr"] == pytest.approx(0.5) and out["dds"]["meets_bar"]
    assert out["dps"]["d_psnr"] == pytest.approx(np.mean(gain["dps"]))
    assert out["dps"]["worst_d_psnr"] == pytest.approx(-1.5) and out["dps"]["slices_below_1db"] == 1
    assert not out["dps"]["meets_bar"]  # better on average, but one slice 1.5 dB below BART
    lo, hi = out["dps"]["d_psnr_ci"]
    assert lo <= out["dps"]["d_psnr"] <= hi


def test_frontier_paired_rows_pair_slice_by_slice_and_divide_seconds():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import frontier_paired as fp
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    ref = [25.0, 26.0, 27.0, 28.0]
    rows = [{"label": "BART", "seconds_per_slice": 0.4, "psnr_per_slice": [22.0] * 4},
            {"label": "fast", "seconds_per_slice": 0.3, "psnr_per_slice": [25.5, 26.5, 26.8, 28.4]},
            {"label": "DDS-50", "seconds_per_slice": 3.0, "psnr_per_slice": ref}]
    out = {r["label"]: r for r in fp.paired_rows(rows, "DDS-50", "BART")}
    d = np.array([0.5, 0.5, -0.2, 0.4])
    assert out["fast"]["dpsnr"] == pytest.approx(d.mean(), abs=1e-3) and out["fast"]["worst"] == pytest.approx(-0.2)
    lo, hi = out["fast"]["ci"]
    assert d.min() <= lo <= d.mean() <= hi <= d.max()
    assert out["fast"]["time_ratio"] == pytest.approx(0.75) and out["DDS-50"]["time_ratio"] == pytest.approx(7.5)
    assert out["DDS-50"]["dpsnr"] is None and out["BART"]["time_ratio"] is None
    with pytest.raises(SystemExit, match="no row labelled"):
        fp.paired_rows(rows, "DDS-100", None)
