"""Point-mask density refinement scored by DDS (:mod:`fastmri_diffmask.learn.refine_density`):
equal-count rings, exact budget for every candidate, fixed and excluded entries untouched, every
kept reweighting raises the recorded score, the end score is the fresh score of the result, the
result is seeded, and under a Gaussian prior whose variance falls with the radius a flat start
moves its samples towards the centre."""

import numpy as np
import pytest
import torch

from fastmri_diffmask.dataset import SliceData
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.learn.greedy_search import TrainingScorer, dds_shared_noise
from fastmri_diffmask.learn.refine_density import refine_point_density, reweighted, ring_index
from fastmri_diffmask.learn.validate import psnr
from fastmri_diffmask.masks.bernoulli import BernoulliMask, centre_distance
from fastmri_diffmask.physics import fft2c
from fastmri_diffmask.prior.gaussian import GaussianPrior

torch.set_num_threads(1)
N = 16


def _problem(seed=0):
    """Images whose k-space variance falls steeply with the distance to the centre."""
    r = torch.from_numpy(centre_distance((N, N))).float()
    var = 1e-2 * torch.exp(-6 * r)
    prior = GaussianPrior(torch.zeros(N, N, dtype=torch.complex64), var)
    images = prior.sample(4, torch.Generator().manual_seed(seed + 1))
    maps = torch.ones(4, 1, N, N, dtype=torch.complex64)
    train = SliceData(fft2c(maps * images[:, None]), maps, images.abs(), ["x.h5"] * 4, list(range(4)), torch.ones(4))
    return prior, train


def _scorer(prior, train, shape=(N, N), kind="point"):
    return TrainingScorer(prior, train, kind, shape, num_slices=2, dds_steps=3, seed=0)


def _mask():
    return BernoulliMask((N, N), 4, 4, kind="point", acquired=((0, N), (1, N - 1)))  # columns 0 and 15 "padded"


def test_rings_have_equal_counts_and_grow_outwards():
    mask = _mask()
    ring = ring_index(mask, 5)
    free = mask.free.numpy()
    assert (ring[~free] == -1).all() and (ring[free] >= 0).all()
    counts = np.bincount(ring[free], minlength=5)
    assert counts.max() - counts.min() <= 1
    dist = centre_distance((N, N))
    assert all(dist[ring == k].max() <= dist[ring == k + 1].min() + 1e-12 for k in range(4))


def test_every_reweighting_keeps_the_exact_budget():
    mask = _mask()
    ring = ring_index(mask, 4)
    density = mask.flattened(1.0)  # flat
    for log_w in ([0, 0, 0, 0], [2, 0, 0, -2], [-3, 1, 0, 5]):
        p = reweighted(mask, density, ring, np.asarray(log_w, float))
        assert float(p[mask.free].sum()) == pytest.approx(mask.budget - mask.num_fixed, rel=1e-6)
        assert bool((p[mask.fixed] == 1).all()) and bool((p[mask.excluded] == 0).all())
        m = mask.systematic(0.5, probabilities=p)
        assert int(m.sum()) == mask.budget


def test_refinement_moves_a_flat_density_inwards_and_only_improves():
    prior, train = _problem()
    mask = _mask()
    out, hist = refine_point_density(_scorer(prior, train), mask, mask.flattened(1.0), rings=4, factor=2.0, sweeps=3,
                                     progress=False)
    assert int(out.sum()) == mask.budget and bool(out[mask.fixed].all()) and not bool(out[mask.excluded].any())
    scores = [hist["start"]] + [k["score"] for k in hist["kept"]]
    assert all(b > a for a, b in zip(scores, scores[1:])) and hist["end"] == scores[-1]
    assert hist["kept"], "a flat start under a centre-heavy prior leaves room for a reweighting"
    w = np.asarray(hist["log_weights"])
    assert w[0] > w[-1], f"the inner ring should gain weight against the outer one, got {w}"
    data = train.subset(hist["slices"])
    rec = dds_shared_noise(prior, data.kspace, data.sens_maps, out[None], "point", 3, 0)
    assert float(psnr(rec[0].abs(), data.images.abs()).mean()) == pytest.approx(hist["end"], abs=1e-4)
    again, hist2 = refine_point_density(_scorer(prior, train), mask, mask.flattened(1.0), rings=4, factor=2.0,
                                        sweeps=3, progress=False)
    assert torch.equal(again, out) and hist2["kept"] == hist["kept"]


def test_bad_input_is_one_clear_error():
    prior, train = _problem()
    mask = _mask()
    score = _scorer(prior, train)
    with pytest.raises(UserError, match="point mask"):
        line = BernoulliMask((N,), 4, 4)
        refine_point_density(_scorer(prior, train, (N,), "line"), line, line.probabilities(), progress=False)
    with pytest.raises(UserError, match="point mask"):  # a scorer of another shape
        refine_point_density(_scorer(prior, train, (N, N + 2)), mask, mask.probabilities(), progress=False)
    with pytest.raises(UserError, match="factor"):
        refine_point_density(score, mask, mask.probabilities(), factor=1.0, progress=False)
    with pytest.raises(UserError, match="shape"):
        refine_point_density(score, mask, torch.ones(N, N + 1), progress=False)
    with pytest.raises(UserError, match="rings"):
        ring_index(mask, 10_000)


def test_angular_harmonics_and_anisotropic_reweighting_keep_the_budget():
    from fastmri_diffmask.learn.refine_density import angular_harmonics

    h = angular_harmonics((N, N))
    c = N // 2
    assert h[0, 0, c] == pytest.approx(1) and h[0, c, 0] == pytest.approx(-1) and h[1, 0, 0] == pytest.approx(1)
    assert (h[:, c, c] == 0).all() and np.allclose(h[0] ** 2 + h[1] ** 2, np.where(centre_distance((N, N)) > 0, 1, 0))
    mask = _mask()
    ring = ring_index(mask, 4)
    p = reweighted(mask, mask.flattened(1.0), ring, np.array([0, 0, 0, 0, 1.5, -0.5]), h)
    assert float(p[mask.free].sum()) == pytest.approx(mask.budget - mask.num_fixed, rel=1e-6)
    assert bool((p[mask.fixed] == 1).all()) and bool((p[mask.excluded] == 0).all())
    free = mask.free.numpy()
    on_ky = free & (np.abs(h[0]) > 0.9) & (h[0] > 0)
    on_kz = free & (np.abs(h[0]) > 0.9) & (h[0] < 0)
    assert p.numpy()[on_ky].mean() > p.numpy()[on_kz].mean()  # a > 0 moves density onto the ky axis


def test_anisotropic_refinement_follows_an_anisotropic_prior():
    # k-space variance falls slowly along ky (axis 0) and fast along kz: from an isotropic
    # density the refinement should keep a cos(2 theta) reweighting that favours the ky axis.
    ky, kz = np.meshgrid(*[np.abs(np.arange(N) - N // 2) / (N / 2)] * 2, indexing="ij")
    var = torch.from_numpy(1e-2 * np.exp(-1.5 * ky - 12 * kz)).float()
    prior = GaussianPrior(torch.zeros(N, N, dtype=torch.complex64), var)
    images = prior.sample(4, torch.Generator().manual_seed(3))
    maps = torch.ones(4, 1, N, N, dtype=torch.complex64)
    train = SliceData(fft2c(maps * images[:, None]), maps, images.abs(), ["x.h5"] * 4, list(range(4)), torch.ones(4))
    mask = BernoulliMask((N, N), 4, 2, kind="point")
    density = mask.renormalised(torch.from_numpy((1 - np.minimum(centre_distance((N, N)), 1)) ** 2))
    # one ring (a radial reweighting of all free entries renormalises to itself): only the angle moves
    out, hist = refine_point_density(_scorer(prior, train), mask, density, rings=1, factor=2.0, sweeps=3,
                                     anisotropy=True, progress=False)
    assert int(out.sum()) == mask.budget and hist["anisotropy"]
    assert hist["kept"] and hist["end"] > hist["start"] + 1, hist
    assert hist["log_weights"][1] > 0, hist["log_weights"]  # cos(2 theta) weight: towards the ky axis
    c = N // 2
    assert out[:, c].sum() > out[c, :].sum()  # more samples on the ky axis than on the kz axis
