"""bg_error (error energy outside the object's support) and the worst-slice summaries."""

import json

import numpy as np
import pytest

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.metrics import METRIC_NAMES, background_error, object_support, score, score_volume, worst_slice


def _head(n=64, seed=0):
    """An elliptical 'head' (bright rim, grey tissue, a dark ventricle) in a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    r = (xx / 0.55) ** 2 + (yy / 0.7) ** 2
    img = np.where(r < 1, 0.6, 0.0) + np.where((r < 1) & (r > 0.8), 0.4, 0.0)
    img[(xx / 0.12) ** 2 + (yy / 0.2) ** 2 < 1] = 0.02  # ventricle: dark, but inside the head
    return np.abs(img + 0.005 * rng.standard_normal((n, n))), xx, yy, r


def test_an_arc_outside_the_head_scores_high_and_the_same_mse_inside_scores_low():
    gt, xx, yy, r = _head()
    arc = (np.abs(np.hypot(xx / 0.75, yy / 0.9) - 1) < 0.04) & (yy < -0.2)  # a skull-like arc above the head
    assert not (arc & object_support(gt)).any()
    outside = gt.copy()
    outside[arc] += 0.8
    # the same error energy spread over the head's interior (the ventricle included)
    inner = r < 0.9
    inside = gt + np.where(inner, 1.0, 0.0) * np.sqrt((0.8 ** 2 * arc.sum()) / inner.sum())
    s_out, s_in = score(gt, outside), score(gt, inside)
    assert s_out["psnr"] == pytest.approx(s_in["psnr"], abs=0.05)  # PSNR cannot tell them apart
    expected = 0.8 ** 2 * arc.sum() / (gt ** 2).sum()
    assert s_out["bg_error"] == pytest.approx(expected, rel=1e-6)
    assert s_in["bg_error"] < 1e-3 * s_out["bg_error"]
    assert score(gt, gt)["bg_error"] == 0.0 and set(s_out) == set(METRIC_NAMES)


def test_support_rule_fills_holes_and_dilates():
    gt, xx, yy, r = _head()
    s = object_support(gt)
    assert s[32, 32]  # the dark ventricle is inside
    assert s[r < 1].all()
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(r >= 1)  # pixels from the head
    edge = (dist > 2) & (dist <= 3.5)  # just beyond the rim: within the 3-pixel margin
    assert s[edge].all()
    assert not s[r > 2.5].any()
    assert not object_support(gt, margin=0)[edge].all()  # the margin is what covers them
    assert not object_support(np.zeros((16, 16))).any()
    for bad in (dict(threshold=0), dict(threshold=1.5), dict(margin=-1), dict(margin=1.5), dict(smooth=-1)):
        with pytest.raises(UserError):
            object_support(gt, **bad)


def test_volume_bg_error_sums_per_slice_supports():
    a, *_ = _head(seed=1)
    b, *_ = _head(seed=2)
    vol = np.stack([a, 2 * b])
    pred = vol.copy()
    pred[0, :4] += 0.5  # background rows of slice 0
    want = 0.25 * 4 * 64 / (vol ** 2).sum()
    assert background_error(vol, pred) == pytest.approx(want, rel=1e-6)
    assert score_volume(vol, pred)["bg_error"] == pytest.approx(want, rel=1e-6)
    assert background_error(vol[0], pred[0]) == pytest.approx(0.25 * 4 * 64 / (a ** 2).sum(), rel=1e-6)
    with pytest.raises(UserError):
        background_error(vol, pred[:1])


def test_worst_slice_takes_the_bad_end_of_each_metric():
    rows = [{"psnr": 30.0, "ssim": 0.9, "bg_error": 0.001, "nmse": 0.01},
            {"psnr": 24.0, "ssim": 0.95, "bg_error": 0.02, "nmse": 0.03},
            {"psnr": 33.0, "ssim": 0.7, "bg_error": 0.004, "nmse": 0.02}]
    assert worst_slice(rows) == {"psnr": 24.0, "ssim": 0.7, "nmse": 0.03, "bg_error": 0.02}
    assert worst_slice(rows, ["psnr"]) == {"psnr": 24.0}
    with pytest.raises(UserError):
        worst_slice([])
    with pytest.raises(UserError):
        worst_slice(rows, ["seconds"])


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for mask in ("learned", "equi"):
        for seed in (0, 1):
            for sl in range(4):
                rows.append({"acceleration": 4.0, "mask": mask, "mask_type": mask, "seed": seed, "method": "dps",
                             "fname": "a.h5", "slice": sl, "achieved_acceleration": 4.0, "seconds": 1.0,
                             "psnr": float(rng.uniform(20, 35)), "ssim": float(rng.uniform(0.5, 0.9)),
                             "bg_error": float(rng.uniform(0, 0.05))})
    return rows


def test_compare_report_gives_the_worst_slice_next_to_the_mean():
    from fastmri_diffmask.compare.report import mean_table, summary_markdown

    rows = _rows()
    means = mean_table(rows)
    for (r, mask, meth), v in means.items():
        mine = [x for x in rows if x["mask"] == mask]
        assert v["psnr_min"] == min(x["psnr"] for x in mine) and v["ssim_min"] == min(x["ssim"] for x in mine)
        assert v["bg_error_max"] == max(x["bg_error"] for x in mine)
        assert v["bg_error"] == pytest.approx(np.mean([x["bg_error"] for x in mine]))
    md = summary_markdown(rows, "learned")
    v = means[(4.0, "equi", "dps")]
    assert f"{v['psnr_min']:.2f} / {v['ssim_min']:.3f} / {v['bg_error']:.4f} (max {v['bg_error_max']:.4f})" in md
    # cells written before bg_error existed still report (a dash where it is missing)
    old = [{k: x[k] for k in x if k != "bg_error"} for x in rows]
    assert "(max -)" in summary_markdown(old, "learned")


def test_recon_metrics_json_has_worst_slice_and_bg_error(tmp_path):
    from fastmri_diffmask.cli.main import main

    data = tmp_path / "data"
    assert main(["make-data", "--out", str(data), "--split", "test", "--size", "32", "--coils", "4",
                 "--slices-per-file", "5"]) == 0
    out = tmp_path / "r"
    assert main(["recon", "--data", str(data), "--split", "test", "--mask-type", "equispaced_fraction",
                 "--acceleration", "4", "--method", "zero-filled", "--out", str(out), "--sens-maps", "file",
                 "--num-low-frequencies", "4", "--num-slices", "4"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    sl = res["slices"]
    assert len(sl) == 4 and all(0 <= s["bg_error"] < 1 for s in sl)
    assert res["worst"]["psnr"] == min(s["psnr"] for s in sl) and res["worst"]["ssim"] == min(s["ssim"] for s in sl)
    assert res["worst"]["bg_error"] == max(s["bg_error"] for s in sl)
    assert res["mean"]["bg_error"] == pytest.approx(np.mean([s["bg_error"] for s in sl]))
