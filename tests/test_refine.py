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


def test_classical_score_is_the_mean_of_dds_and_the_classical_psnr():
    # TrainingScorer(classical=...) averages the DDS PSNR with CG-SENSE's (or BART's); batched
    # classical reconstructions equal one-mask-at-a-time ones, and a full mask gives back the image.
    from fastmri_diffmask.learn.greedy_search import TrainingScorer, classical_reconstructions
    from fastmri_diffmask.physics import MultiCoilOperator, percentile_scale
    from fastmri_diffmask.masks.bernoulli import as_kspace_mask
    from fastmri_diffmask.sample.warm_start import sense_estimate

    prior, train, _ = _problem(3)
    mask, _, _ = _start()
    masks = np.stack([mask.numpy(), np.roll(mask.numpy(), 1)]).astype(bool)
    dds_only = TrainingScorer(prior, train, "line", (W,), 2, 3, 0)
    both = TrainingScorer(prior, train, "line", (W,), 2, 3, 0, classical="sense")
    data = train.subset(dds_only.slices)
    rec = classical_reconstructions(data.kspace, data.sens_maps, torch.from_numpy(masks).float(), "line", "sense")
    for j, m in enumerate(masks):  # mask-major, and the same as reconstructing one mask alone
        km = as_kspace_mask(torch.from_numpy(m).float().expand(2, W), "line")
        op = MultiCoilOperator(data.sens_maps, km)
        y = data.kspace * km
        scale = percentile_scale(op.adjoint(y))
        alone = sense_estimate(op, y / scale.unsqueeze(1)) * scale
        assert torch.allclose(rec[2 * j:2 * j + 2], alone, atol=1e-5)
    sense_psnr = psnr(rec.abs(), data.images.abs().repeat(2, 1, 1)).view(2, -1).mean(1)
    expected = (torch.tensor(dds_only(masks)) + sense_psnr) / 2
    assert torch.allclose(torch.tensor(both(masks)), expected, atol=1e-4)
    full = classical_reconstructions(data.kspace, data.sens_maps, torch.ones(1, W), "line", "sense")
    assert float(psnr(full.abs(), data.images.abs()).min()) > 40
    with pytest.raises(UserError, match="classical"):
        TrainingScorer(prior, train, "line", (W,), 2, 3, 0, classical="bart")


def test_min_agree_keeps_only_moves_that_raise_every_scoring_slice():
    prior, train, _ = _problem(5)  # a problem where a move the mean likes lowers one slice
    mask, fixed, allowed = _start()
    kw = dict(moves=(1, 2, 3), sweeps=2, num_slices=4, dds_steps=3, progress=False)
    plain, hist0 = refine_line_mask(prior, train, mask, fixed, allowed, **kw)
    same, hist_zero = refine_line_mask(prior, train, mask, fixed, allowed, min_agree=0.0, **kw)
    assert torch.equal(plain, same) and hist0["moves"] == hist_zero["moves"]  # 0: the mean alone decides
    out, hist = refine_line_mask(prior, train, mask, fixed, allowed, min_agree=1.0, **kw)
    assert int(out.sum()) == int(mask.sum()) and bool(out[fixed].all()) and not bool(out[~allowed].any())
    # every kept move raised the fresh per-slice scores of all 4 slices over the mask before it
    data = train.subset(hist["slices"])
    before = mask.clone()
    for move in hist["moves"]:
        after = before.clone()
        after[move["from"]], after[move["to"]] = 0, 1
        rec = dds_shared_noise(prior, data.kspace, data.sens_maps, torch.stack([before, after]), "line", 3, 0)
        each = psnr(rec.abs().flatten(0, 1), data.images.abs().repeat(2, 1, 1)).view(2, -1)
        assert bool((each[1] > each[0]).all())
        before = after
    assert torch.equal(before, out)
    # and the rule binds: some line's best-by-mean move was refused because a slice got worse
    refused = [t for t in hist["tried"] if max(t["scores"]) > t["current"]
               and t["agree"][int(np.argmax(t["scores"]))] < 4]
    assert refused and hist0["moves"] != hist["moves"]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "x", True])
def test_min_agree_outside_zero_one_is_a_one_line_error(bad, tmp_path):
    from fastmri_diffmask.learn.api import LearnMaskOptions
    from fastmri_diffmask.learn.checks import check_inputs

    prior, train, _ = _problem()
    mask, fixed, allowed = _start()
    with pytest.raises(UserError, match="fraction in"):
        refine_line_mask(prior, train, mask, fixed, allowed, min_agree=bad, num_slices=2, dds_steps=2, progress=False)
    with pytest.raises(UserError, match="--refine-min-agree must be a fraction"):  # before anything is loaded
        check_inputs(LearnMaskOptions(refine_min_agree=bad), tmp_path / "m.safetensors", 8.0, "line")
    assert not (tmp_path / "m.safetensors").exists()
