"""Greedy mask learners: the gradient greedy of :mod:`fastmri_diffmask.learn.greedy` against a
Gaussian oracle, exact budgets and reproducibility, and the reconstruction-scored stochastic
greedy search of :mod:`fastmri_diffmask.learn.greedy_search`."""

import dataclasses

import numpy as np
import pytest
import torch

from fastmri_diffmask.dataset import SliceData
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.learn.greedy import greedy_mask
from fastmri_diffmask.learn.greedy_search import dds_shared_noise, greedy_search_mask, spread_indices
from fastmri_diffmask.learn.objective import ObjectiveConfig
from fastmri_diffmask.learn.validate import psnr
from fastmri_diffmask.masks.bernoulli import BernoulliMask, as_kspace_mask
from fastmri_diffmask.physics import fft2c
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.sample.dds import dds_reconstruct

torch.set_num_threads(1)


def _column_prior(h: int, w: int, seed: int = 0):
    """Zero-mean Gaussian prior whose k-space variance is constant down each column and distinct
    across columns (a factor 3 apart, in a random column order): column j's variance is known."""
    g = torch.Generator().manual_seed(seed)
    col = 3.0 ** -torch.randperm(w, generator=g).double() * 1e-2
    var = col[None].expand(h, w).float().clone()
    return GaussianPrior(torch.zeros(h, w, dtype=torch.complex64), var), col


def _slices(images: torch.Tensor, coils: int = 1) -> SliceData:
    n, h, w = images.shape
    maps = torch.ones(n, coils, h, w, dtype=torch.complex64) / coils ** 0.5
    k = fft2c(maps * images[:, None])
    return SliceData(k, maps, images.abs(), ["x.h5"] * n, list(range(n)), torch.ones(n))


def _data(h=32, w=16, n=6, seed=0, coils=1):
    prior, col = _column_prior(h, w, seed)
    images = prior.sample(n, torch.Generator().manual_seed(seed + 10))
    return prior, col, _slices(images, coils)


# sigma fixed and large (p_std = 0): the one-step estimate keeps (almost) none of the truth, so the
# loss gradient at an unsampled column is -4 eta (times the Wiener gain for "tweedie") times the
# column's energy, whose expectation is proportional to the column's variance.
BIG_SIGMA = dict(p_mean=float(np.log(100.0)), p_std=0.0)


@pytest.mark.parametrize("objective", ["tweedie-x0", "tweedie"])
def test_pure_gradient_greedy_picks_the_highest_variance_columns_in_order(objective):
    prior, col, train = _data()
    obj = ObjectiveConfig(objective=objective, **BIG_SIGMA)  # mask_form "paper": forced to linear
    mask, hist = greedy_mask(prior, train, "line", 4, 2, obj, batch=2, top_k=1, progress=False)
    ref = BernoulliMask(16, 4, 2)
    free = np.flatnonzero(ref.free.numpy())
    want = free[np.argsort(-col.numpy()[free], kind="stable")][: ref.budget - ref.num_fixed]
    assert [a["index"] for a in hist["additions"]] == list(want)
    assert hist["mask_form_forced"] and hist["objective"]["mask_form"] == "linear"
    assert all(a["grad"] < 0 for a in hist["additions"])
    assert int(mask.sum()) == ref.budget and set(np.flatnonzero(mask.numpy())) == set(want) | {7, 8}


def test_top_k_picks_the_farthest_of_the_k_highest_variance_columns():
    prior, col, train = _data(w=24, seed=1)
    obj = ObjectiveConfig(objective="tweedie-x0", **BIG_SIGMA)
    _, hist = greedy_mask(prior, train, "line", 3, 4, obj, top_k=3, progress=False)
    chosen = set(hist["order"][: hist["num_fixed"]])
    v = col.numpy()
    for a in hist["additions"]:
        left = [j for j in range(24) if j not in chosen]
        top = sorted(left, key=lambda j: -v[j])[:3]
        assert a["candidates"] == top  # the top-k most negative gradients = highest variances
        dist = {j: min(abs(j - c) for c in chosen) for j in top}
        assert dist[a["index"]] == max(dist.values())
        chosen.add(a["index"])
    assert any(a["index"] != a["candidates"][0] for a in hist["additions"])  # the rule mattered


def test_top_k_covering_everything_is_farthest_point_sampling():
    prior, _, train = _data(h=8, w=8, seed=2)
    obj = ObjectiveConfig(objective="tweedie-x0")
    _, hist = greedy_mask(prior, train, "point", 4, 2, obj, top_k=10 ** 6, progress=False)
    coords = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1).reshape(-1, 2)
    chosen = list(hist["order"][: hist["num_fixed"]])
    for a in hist["additions"]:
        left = [j for j in range(64) if j not in chosen]
        d = lambda j: np.sqrt(((coords[j] - coords[chosen]) ** 2).sum(1)).min()  # noqa: E731
        assert d(a["index"]) == pytest.approx(max(d(j) for j in left))
        chosen.append(a["index"])


@pytest.mark.parametrize("kind,objective,adds", [("line", "dds", 1), ("line", "unrolled", 2),
                                                 ("point", "tweedie", 3), ("point", "dds", 2)])
def test_exact_budget_never_fixed_or_excluded_and_reproducible(kind, objective, adds):
    prior, _, train = _data(h=16, w=16, n=5, seed=3, coils=2)
    obj = ObjectiveConfig(objective=objective, recon_steps=2, recon_cg_iters=2, unroll_steps=2)
    fixed = np.zeros(16 if kind == "line" else (16, 16))
    fixed[(1,) if kind == "line" else (1, 8)] = 1
    kw = dict(batch=2, top_k=2, adds_per_step=adds, seed=5, fixed=fixed, corner_cut=kind == "point",
              progress=False)
    r = 2 if kind == "line" else 5
    ref = BernoulliMask(fixed.shape, r, 4, kind=kind, corner_cut=kind == "point", fixed=fixed)
    mask, hist = greedy_mask(prior, train, kind, r, 4, obj, **kw)
    assert int(mask.sum()) == ref.budget and set(np.unique(mask.numpy())) <= {0.0, 1.0}
    assert torch.all(mask[ref.fixed] == 1) and torch.all(mask[ref.excluded] == 0)
    added = [a["index"] for a in hist["additions"]]
    assert len(added) == len(set(added)) == ref.budget - ref.num_fixed
    assert not ref.fixed.numpy().ravel()[added].any() and not ref.excluded.numpy().ravel()[added].any()
    assert sorted(hist["order"]) == sorted(np.flatnonzero(mask.numpy().ravel()))
    assert hist["steps"] == -(-(ref.budget - ref.num_fixed) // adds)
    again, hist2 = greedy_mask(prior, train, kind, r, 4, obj, **kw)
    assert torch.equal(mask, again) and hist == hist2


def test_seed_changes_the_batches_and_bad_input_is_a_user_error():
    prior, _, train = _data(h=16, w=16, n=6, seed=4)
    obj = ObjectiveConfig(objective="tweedie-x0")
    _, h0 = greedy_mask(prior, train, "line", 4, 2, obj, seed=0, progress=False)
    _, h1 = greedy_mask(prior, train, "line", 4, 2, obj, seed=1, progress=False)
    assert [a["loss"] for a in h0["additions"]] != [a["loss"] for a in h1["additions"]]
    for bad in (dict(top_k=0), dict(batch=1.5), dict(adds_per_step="2")):
        with pytest.raises(UserError):
            greedy_mask(prior, train, "line", 4, 2, obj, progress=False, **bad)
    with pytest.raises(UserError):
        greedy_mask(prior, train, "line", 4, 2, {"objective": "tweedie"}, progress=False)
    with pytest.raises(UserError):
        greedy_mask(prior, train, "line", 4, 2, dataclasses.replace(obj, objective="nope"), progress=False)
    with pytest.raises(UserError):
        greedy_mask(prior, train, "line", 1.0, 2, obj, progress=False)  # R must be > 1
    with pytest.raises(UserError):
        greedy_mask(prior, train, "line", 4, 2, obj, corner_cut=True, progress=False)


@pytest.mark.parametrize("learner", ["greedy", "search"])
def test_padded_columns_are_never_picked_and_the_budget_counts_acquired_columns(learner):
    prior, col, train = _data(h=16, w=16, n=4, seed=8)
    train = train._replace(acquired=[(3, 13)] * 4)
    col_order = np.argsort(-col.numpy())
    assert set(col_order[:4]) - set(range(3, 13))  # the oracle would like a padded column
    if learner == "greedy":
        mask, _ = greedy_mask(prior, train, "line", 2, 2, ObjectiveConfig(objective="tweedie-x0", **BIG_SIGMA),
                              progress=False)
    else:
        mask, _ = greedy_search_mask(prior, train, "line", 2, 2, candidates=3, num_slices=1, dds_steps=2,
                                     progress=False)
    assert torch.all(mask[:3] == 0) and torch.all(mask[13:] == 0)
    assert int(mask.sum()) == BernoulliMask(16, 2, 2, acquired=(3, 13)).budget == 5


# -- greedy search ------------------------------------------------------------------------------
def test_shared_noise_batch_equals_separate_dds_reconstructions():
    prior, _, train = _data(h=16, w=16, n=3, seed=5, coils=2)
    masks = torch.zeros(3, 16)
    masks[:, 7:9] = 1
    masks[0, 2], masks[1, 12], masks[2, [0, 5]] = 1, 1, 1
    rec = dds_shared_noise(prior, train.kspace, train.sens_maps, masks, "line", steps=4, seed=9)
    for j in range(3):
        km = as_kspace_mask(masks[j:j + 1].expand(3, 16), "line")
        one = dds_reconstruct(prior, train.kspace * km, km, train.sens_maps, steps=4,
                              generator=torch.Generator().manual_seed(9), progress=False)
        assert torch.allclose(rec[j], one, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("init", ["zero-filled", "sense"])  # with the fresh-noise step (eta) of the fast DDS
def test_shared_noise_warm_start_equals_separate_warm_started_dds(init):
    prior, _, train = _data(h=16, w=16, n=2, seed=5, coils=2)
    masks = torch.zeros(2, 16)
    masks[:, 7:9] = 1
    masks[0, 2], masks[1, [4, 12]] = 1, 1
    rec = dds_shared_noise(prior, train.kspace, train.sens_maps, masks, "line", steps=3, seed=4, init=init,
                           sigma_start=1.5, eta=1.0, churn=0.0)
    for j in range(2):
        km = as_kspace_mask(masks[j:j + 1].expand(2, 16), "line")
        one = dds_reconstruct(prior, train.kspace * km, km, train.sens_maps, steps=3, init=init, sigma_start=1.5,
                              eta=1.0, churn=0.0, generator=torch.Generator().manual_seed(4), progress=False)
        assert torch.allclose(rec[j], one, atol=1e-5, rtol=1e-4)
    cold = dds_shared_noise(prior, train.kspace, train.sens_maps, masks, "line", steps=3, seed=4)
    assert (rec - cold).abs().max() > 0.01 * rec.abs().max()  # the warm start changes the result


@pytest.mark.parametrize("kind", ["line", "point"])
def test_greedy_search_keeps_the_argmax_and_meets_the_budget(kind):
    prior, _, train = _data(h=16, w=16, n=7, seed=6, coils=2)
    kw = dict(candidates=3, num_slices=2, dds_steps=3, seed=2, max_batch=4, progress=False)
    r = 4 if kind == "line" else 16
    mask, hist = greedy_search_mask(prior, train, kind, r, 2, **kw)
    ref = BernoulliMask(16 if kind == "line" else (16, 16), r, 2, kind=kind)
    assert ref.budget - ref.num_fixed >= 2
    assert int(mask.sum()) == ref.budget and torch.all(mask[ref.fixed] == 1)
    assert hist["slices"] == spread_indices(7, 2) == [1, 5]
    n_scored = 0
    for a in hist["additions"]:
        assert len(a["candidates"]) == len(a["scores"]) == 3
        assert a["index"] == a["candidates"][int(np.argmax(a["scores"]))] and a["psnr"] == max(a["scores"])
        n_scored += len(a["candidates"])
    assert hist["reconstructions"] == n_scored == (ref.budget - ref.num_fixed) * 3
    assert hist["slice_reconstructions"] == 2 * n_scored
    assert [a["index"] for a in hist["additions"]] == hist["order"][ref.num_fixed:]
    # the last step's best score is the final mask's own DDS score with the same noise
    sub = train.subset(hist["slices"])
    km = as_kspace_mask(mask[None].expand(2, *mask.shape), kind)
    rec = dds_reconstruct(prior, sub.kspace * km, km, sub.sens_maps, steps=3,
                          generator=torch.Generator().manual_seed(2), progress=False)
    assert float(psnr(rec.abs(), sub.images.abs()).mean()) == pytest.approx(hist["additions"][-1]["psnr"], abs=1e-3)
    again, hist2 = greedy_search_mask(prior, train, kind, r, 2, **kw)
    assert torch.equal(mask, again) and hist == hist2


def test_greedy_search_bad_input_is_a_user_error():
    prior, _, train = _data(h=16, w=16, n=3, seed=7)
    for bad in (dict(candidates=0), dict(num_slices=-1), dict(dds_steps=2.0)):
        with pytest.raises(UserError):
            greedy_search_mask(prior, train, "line", 4, 4, progress=False, **bad)
