"""Line refinement scored by DDS (:mod:`fastmri_diffmask.learn.refine`): keeps the line count and
fixed lines, moves only into allowed columns, every kept move raises the score it records, the
recorded end score is the fresh score of the result, and the result is seeded."""

import numpy as np
import pytest
import torch

from fastmri_diffmask.dataset import SliceData
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.learn.greedy_search import dds_shared_noise
from fastmri_diffmask.learn.refine import parse_moves, refine_line_mask
from fastmri_diffmask.learn.validate import psnr
from fastmri_diffmask.physics import fft2c
from fastmri_diffmask.prior.gaussian import GaussianPrior

torch.set_num_threads(1)
W = 16


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    col = 3.0 ** -torch.randperm(W, generator=g).float() * 1e-2
    prior = GaussianPrior(torch.zeros(W, W, dtype=torch.complex64), col[None].expand(W, W).clone())
    images = prior.sample(4, torch.Generator().manual_seed(seed + 1))
    maps = torch.ones(4, 1, W, W, dtype=torch.complex64)
    train = SliceData(fft2c(maps * images[:, None]), maps, images.abs(), ["x.h5"] * 4, list(range(4)), torch.ones(4))
    return prior, train, col


def _start():
    fixed = torch.zeros(W, dtype=torch.bool)
    fixed[7:9] = True
    mask = fixed.clone().float()
    mask[[2, 5, 12]] = 1
    allowed = torch.ones(W, dtype=torch.bool)
    allowed[[0, 1, 15]] = False  # "padded" columns
    return mask, fixed, allowed


def test_refinement_keeps_lines_and_fixed_set_and_only_improves():
    prior, train, _ = _problem()
    mask, fixed, allowed = _start()
    out, hist = refine_line_mask(prior, train, mask, fixed, allowed, moves=(1, 2, 3), sweeps=2, num_slices=2,
                                 dds_steps=3, progress=False)
    assert int(out.sum()) == int(mask.sum()) and bool(out[fixed].all())
    assert not bool(out[~allowed].any())
    scores = [hist["start"]] + [m["score"] for m in hist["moves"]]
    assert all(b > a for a, b in zip(scores, scores[1:])) and hist["end"] == scores[-1]
    assert hist["moves"], "a random start should leave room for at least one move"
    # the recorded end score is the fresh DDS score of the result on the recorded slices
    data = train.subset(hist["slices"])
    rec = dds_shared_noise(prior, data.kspace, data.sens_maps, out[None], "line", 3, 0)
    assert float(psnr(rec[0].abs(), data.images.abs()).mean()) == pytest.approx(hist["end"], abs=1e-4)
    again, hist2 = refine_line_mask(prior, train, mask, fixed, allowed, moves=(1, 2, 3), sweeps=2, num_slices=2,
                                    dds_steps=3, progress=False)
    assert torch.equal(again, out) and hist2["moves"] == hist["moves"]


def test_a_huge_threshold_keeps_the_mask_and_stops_after_one_sweep():
    prior, train, _ = _problem(seed=1)
    mask, fixed, allowed = _start()
    out, hist = refine_line_mask(prior, train, mask, fixed, allowed, sweeps=3, num_slices=1, dds_steps=2,
                                 min_gain=1e9, progress=False)
    assert torch.equal(out, mask) and hist["moves"] == [] and hist["sweeps_run"] == 1
    assert hist["reconstructions"] > 1


def test_bad_input_is_one_clear_error():
    prior, train, _ = _problem()
    mask, fixed, allowed = _start()
    with pytest.raises(UserError, match="offsets"):
        parse_moves("1,x")
    with pytest.raises(UserError, match="offsets"):
        parse_moves("0")
    assert parse_moves("3,1,1") == (1, 3)
    with pytest.raises(UserError, match="fixed lines"):
        refine_line_mask(prior, train, torch.zeros(W), fixed, allowed, progress=False)
    with pytest.raises(UserError, match="line mask"):
        refine_line_mask(prior, train, torch.zeros(W, W), fixed, allowed, progress=False)


def test_gradient_proposals_reconstruct_only_the_best_predicted_moves():
    """With a gradient, each line tries only the ``tries`` targets with the most negative
    ``g[t] - g[j]``; the gradient is asked once per sweep with the current mask."""
    prior, train, _ = _problem(seed=2)
    mask, fixed, allowed = _start()
    g = np.linspace(1.0, -1.0, W)  # later columns predicted better
    asked = []

    def gradient(m):
        asked.append(m.copy())
        return g

    out, hist = refine_line_mask(prior, train, mask, fixed, allowed, moves=(1, 2), sweeps=2, num_slices=1,
                                 dds_steps=2, gradient=gradient, tries=1, progress=False)
    assert len(asked) == hist["sweeps_run"] and asked[0].tolist() == mask.bool().tolist()
    m, kept = mask.numpy() > 0.5, list(hist["moves"])
    for t in hist["tried"]:  # replay: each line tried the best-predicted free target (largest column)
        j = t["from"]
        free = [c for c in (j - 2, j - 1, j + 1, j + 2) if 0 <= c < W and allowed[c] and not m[c]]
        assert t["to"] == [max(free)]
        if kept and (kept[0]["sweep"], kept[0]["from"]) == (t["sweep"], j):
            m[j], m[kept[0]["to"]] = False, True
            kept.pop(0)
    assert hist["reconstructions"] == 1 + len(hist["tried"])


def test_loss_gradient_ranks_high_variance_columns_first():
    """Under a column-variance Gaussian prior the one-step objective's gradient at an unsampled
    column is most negative where the column's variance is largest (see tests/test_greedy.py)."""
    from fastmri_diffmask.learn.objective import ObjectiveConfig
    from fastmri_diffmask.learn.refine import loss_gradient

    prior, train, col = _problem(seed=3)
    mask, fixed, _ = _start()
    obj = ObjectiveConfig(objective="tweedie-x0", p_mean=float(np.log(100.0)), p_std=0.0)
    g = loss_gradient(prior, train, mask.numpy() > 0.5, obj, num_slices=4, batch=2)
    unsampled = np.flatnonzero(mask.numpy() < 0.5)
    assert g.shape == (W,) and np.isfinite(g).all()
    assert unsampled[np.argmin(g[unsampled])] == unsampled[np.argmax(col.numpy()[unsampled])]
