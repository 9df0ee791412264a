"""Metrics: fastMRI's definitions and the paper's data_range = max - min variants."""

import numpy as np
import pytest
from fastmri import evaluate as fm_eval
from skimage.metrics import structural_similarity

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.metrics import METRIC_NAMES, score, score_volume


def _pair(seed=0, offset=0.3, shape=(48, 40)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    target = offset + np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / 200.0)
    pred = target + 0.05 * rng.standard_normal(shape)
    return target.astype(np.float32), pred.astype(np.float32)


def test_score_matches_hand_computed_definitions():
    gt, pr = _pair()
    s = score(gt, pr)
    assert set(s) == set(METRIC_NAMES)
    g, p = gt.astype(np.float64), np.abs(pr.astype(np.float64))
    mse = np.mean((g - p) ** 2)
    assert s["nmse"] == pytest.approx(np.sum((g - p) ** 2) / np.sum(g**2), rel=1e-6)
    assert s["psnr"] == pytest.approx(10 * np.log10(g.max() ** 2 / mse), rel=1e-6)
    assert s["psnr_paper"] == pytest.approx(10 * np.log10((g.max() - g.min()) ** 2 / mse), rel=1e-6)
    # a positive background makes the paper's range smaller, so its PSNR is lower
    assert s["psnr_paper"] < s["psnr"] - 1
    assert s["ssim"] == pytest.approx(structural_similarity(g, p, data_range=g.max()), rel=1e-6)
    assert s["ssim_paper"] == pytest.approx(structural_similarity(g, p, data_range=g.max() - g.min()), rel=1e-6)
    assert s["ssim_paper"] < s["ssim"]


def test_score_uses_fastmri_evaluate_per_slice():
    gt, pr = _pair(seed=1)
    s = score(gt, pr)
    g, p = gt.astype(np.float64), np.abs(pr).astype(np.float64)
    assert s["ssim"] == pytest.approx(float(np.squeeze(fm_eval.ssim(g[None], p[None]))), rel=1e-6)
    assert s["psnr"] == pytest.approx(float(fm_eval.psnr(g, p)), rel=1e-6)


def test_better_prediction_scores_better_and_identity_is_perfect():
    gt, pr = _pair(seed=2)
    worse = gt + 3 * (pr - gt)
    a, b = score(gt, pr), score(gt, worse)
    assert a["nmse"] < b["nmse"] and a["psnr"] > b["psnr"] and a["ssim"] > b["ssim"]
    same = score(gt, gt.copy())
    assert same["nmse"] == 0 and same["psnr"] == np.inf
    assert same["ssim"] == pytest.approx(1.0) and same["ssim_paper"] == pytest.approx(1.0)


def test_complex_inputs_are_scored_by_magnitude():
    gt, pr = _pair(seed=3)
    phase = np.exp(1j * np.linspace(0, 3, gt.size)).reshape(gt.shape)
    assert score(gt * phase, pr * phase) == pytest.approx(score(gt, pr), rel=1e-5)


def test_score_volume_matches_fastmri_volume_definitions():
    pairs = [_pair(seed=s) for s in range(3)]
    gt = np.stack([p[0] * (1 + i) for i, p in enumerate(pairs)]).astype(np.float64)
    pr = np.stack([p[1] * (1 + i) for i, p in enumerate(pairs)]).astype(np.float64)
    v = score_volume(gt, pr)
    assert v["nmse"] == pytest.approx(float(fm_eval.nmse(gt, pr)), rel=1e-6)
    assert v["psnr"] == pytest.approx(float(fm_eval.psnr(gt, pr)), rel=1e-6)
    assert v["ssim"] == pytest.approx(float(np.squeeze(fm_eval.ssim(gt, pr))), rel=1e-6)
    # volume data range, not per-slice: differs from the mean of per-slice scores
    per_slice = np.mean([score(g, p)["ssim"] for g, p in zip(gt, pr)])
    assert v["ssim"] != pytest.approx(per_slice, rel=1e-4)


@pytest.mark.parametrize(
    "target, pred, match",
    [
        (np.ones((32, 32)), np.ones((32, 31)), "differs"),
        (np.ones((2, 32, 32)), np.ones((2, 32, 32)), r"\(H, W\)"),
        (np.zeros((32, 32)), np.ones((32, 32)), "all zero"),
        (np.ones((5, 32)), np.ones((5, 32)), "7x7"),
        (np.ones((32, 32)), np.full((32, 32), np.nan), "NaN"),
    ],
)
def test_bad_input(target, pred, match):
    with pytest.raises(UserError, match=match) as err:
        score(target, pred)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError):
        score_volume(np.ones((32, 32)), np.ones((32, 32)))
