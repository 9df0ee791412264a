"""BernoulliMask: budget renormalisation, exact binarization, Gumbel straight-through, errors."""

import itertools

import numpy as np
import pytest
import torch

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.masks.bernoulli import BernoulliMask, centre_distance
from fastmri_diffmask.masks.file import centre_slices, load_mask_file, save_mask_file

torch.set_num_threads(1)

COMBOS = [(w, r, c) for w, r, c in itertools.product((16, 32, 37, 128, 320), (2, 3, 4, 5.5, 8, 12), (0, 1, 4, 10, 16))
          if c <= round(w / r)]


def _random_logits(m: BernoulliMask, seed: int, shift: float = 0.0) -> BernoulliMask:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.logits.copy_(torch.randn(m.shape, generator=g) * 2 + shift)
    return m


@pytest.mark.parametrize("shift", [-4.0, 0.0, 4.0])  # both branches of the renormalisation
def test_renormalised_mean_equals_target(shift):
    for i, (w, r, c) in enumerate(COMBOS):
        m = _random_logits(BernoulliMask(w, r, c), i, shift)
        p = m.probabilities().detach().double()
        assert torch.all(p >= 0) and torch.all(p <= 1)
        assert abs(float(p[m.free].mean()) - m.target_mean) < 1e-5
        assert abs(float(p.sum()) - round(w / r)) < 1e-3 * w
        assert torch.all(p[m.fixed] == 1)


def test_brief_formula_on_a_hand_example():
    m = BernoulliMask(10, 2, 2)  # budget 5, 3 of 8 free entries: s = 3/8
    with torch.no_grad():
        m.logits.copy_(torch.tensor([0.0, 1, 2, 0, 0, 0, 0, -1, -2, 3]))
    p = torch.sigmoid(m.logits[m.free])
    mu, s = p.mean(), 3 / 8
    expect = p * s / mu if mu >= s else 1 - (1 - s) / (1 - mu) * (1 - p)
    assert torch.allclose(m.probabilities()[m.free], expect)


@pytest.mark.parametrize("method", ["topk", "quantile"])
def test_binarize_counts_are_exact_and_deterministic(method):
    for i, (w, r, c) in enumerate(COMBOS):
        m = _random_logits(BernoulliMask(w, r, c), i)
        b = m.binarize(method)
        assert int(b.sum()) == round(w / r), (w, r, c)
        assert set(np.unique(b.numpy())) <= {0.0, 1.0}
        if c:
            assert torch.all(b[centre_slices((w,), c)] == 1)
        assert torch.equal(b, m.binarize(method))


def test_point_masks_with_corner_cut():
    for (h, w), r, c in itertools.product([(16, 16), (24, 32), (40, 40)], (3, 6, 10), (0, 4)):
        m = _random_logits(BernoulliMask((h, w), r, c, kind="point", corner_cut=True), h + w)
        for method in ("topk", "quantile"):
            b = m.binarize(method)
            assert int(b.sum()) == round(h * w / r)
            assert not torch.any(b.bool() & m.excluded)
            if c:
                assert torch.all(b[centre_slices((h, w), c)] == 1)
        p = m.probabilities().detach()
        assert torch.all(p[m.excluded] == 0)
        assert abs(float(p.sum()) - round(h * w / r)) < 1e-3


def test_ties_break_towards_the_centre():
    m = BernoulliMask(32, 4, 4)  # all logits 0: top-k takes the lines nearest the centre
    b = m.binarize("topk").numpy()
    assert np.flatnonzero(b).tolist() == list(range(12, 20))
    q = m.binarize("quantile").numpy()  # uniform density: evenly spread samples
    gaps = np.diff(np.flatnonzero(q * (1 - np.isin(np.arange(32), range(14, 18)))))
    assert gaps.min() >= 5


def test_quantile_export_follows_the_density():
    m = BernoulliMask(128, 4, 8)
    with torch.no_grad():  # density high on the left half, low on the right
        m.logits.copy_(torch.where(torch.arange(128) < 64, 2.0, -2.0))
    b = m.binarize("quantile").numpy()
    outer = b.copy()
    outer[centre_slices((128,), 8)] = 0
    assert outer[:64].sum() > 2 * outer[64:].sum() > 0


@pytest.mark.parametrize("w,r,c", [(32, 1.0, 4), (32, 0.5, 4), (32, 4, 10), (32, 8, 5), (16, 40, 0)])
def test_impossible_acceleration_is_a_one_line_user_error(w, r, c):
    with pytest.raises(UserError) as e:
        BernoulliMask(w, r, c)
    assert "\n" not in str(e.value)


def test_gumbel_straight_through_is_hard_unbiased_and_differentiable():
    m = _random_logits(BernoulliMask(32, 4, 4), 7)
    g = torch.Generator().manual_seed(0)
    s = m.sample(4000, tau=1.0, generator=g)
    assert set(torch.unique(s).tolist()) <= {0.0, 1.0}
    assert torch.all(s[:, m.fixed] == 1)
    assert torch.allclose(s.mean(0), m.probabilities().detach(), atol=0.035)  # Bernoulli(p') marginals
    weights = torch.randn(32, generator=g)
    (s[:16] * weights).sum().backward()
    grad = m.logits.grad
    assert torch.all(torch.isfinite(grad)) and float(grad[m.free].abs().min()) > 0
    assert torch.all(grad[m.fixed] == 0)


def test_relaxed_mask_and_exact_draws():
    m = _random_logits(BernoulliMask(48, 4, 6), 3)
    rel = m.relaxed(8, generator=torch.Generator().manual_seed(1))
    assert torch.all((rel[:, m.free] > 0) & (rel[:, m.free] < 1)) and torch.all(rel[:, m.fixed] == 1)
    rel.sum().backward()
    assert torch.all(torch.isfinite(m.logits.grad)) and float(m.logits.grad.abs().sum()) > 0
    g = torch.Generator().manual_seed(2)
    draws = [m.draw_exact(g) for _ in range(20)]
    assert all(int(d.sum()) == 12 for d in draws)
    assert len({tuple(d.tolist()) for d in draws}) > 1


def test_mask_file_round_trip(tmp_path):
    m = _random_logits(BernoulliMask((16, 16), 4, 4, kind="point", corner_cut=True), 5)
    mf = m.to_mask_file("quantile", metadata={"seed": 5})
    path = save_mask_file(tmp_path / "m.safetensors", mf)
    back = load_mask_file(path)
    assert back.kind == "point" and back.num_low_frequencies == 4 and back.num_sampled == 64
    assert np.array_equal(back.mask, m.binarize("quantile").numpy())
    assert np.allclose(back.probabilities, m.probabilities().detach().numpy())
    assert back.metadata["seed"] == 5 and back.metadata["export"] == "quantile"


def test_centre_distance_is_zero_at_fastmri_centre():
    d = centre_distance((9, 8))
    assert d[4, 4] == 0 and d.argmin() == 4 * 8 + 4


def test_stratified_draws_have_exact_budget_and_follow_the_density():
    m = BernoulliMask(64, 4, 4)
    with torch.no_grad():
        m.logits.copy_(torch.linspace(-3, 3, 64))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([m.draw_exact(g, stratified=True) for _ in range(3000)])
    assert torch.all(draws.sum(1) == 16) and torch.all(draws[:, m.fixed] == 1)
    assert torch.allclose(draws.mean(0), m.probabilities().detach(), atol=0.05)


def test_systematic_masks_are_exact_budget_and_average_to_the_density():
    """``systematic(u)``: exact budget, centre kept, ``u = 1/2`` is the quantile export, and over
    evenly spaced offsets each line is sampled with frequency ~p' (systematic sampling is
    unbiased); different offsets give different masks; an offset outside [0, 1) is refused."""
    m = BernoulliMask(64, 4, 4)
    with torch.no_grad():
        m.logits.copy_(torch.linspace(-3, 3, 64))
    masks = torch.stack([m.systematic((i + 0.5) / 400) for i in range(400)])
    assert torch.all(masks.sum(1) == 16) and torch.all(masks[:, m.fixed] == 1)
    assert torch.allclose(masks.mean(0), m.probabilities().detach(), atol=0.01)
    assert torch.equal(m.systematic(0.5), m.binarize("quantile"))
    assert len({tuple(x.tolist()) for x in masks}) > 10
    q = m.flattened(1.0)  # flat: a regular grid over the free lines (the centre skipped)
    ranks = np.searchsorted(np.flatnonzero(m.free.numpy()), np.flatnonzero((m.systematic(0.25, probabilities=q) * m.free).numpy()))
    assert len(ranks) == 12 and np.all(np.diff(ranks) == 5)
    for bad in (-0.1, 1.0):
        with pytest.raises(UserError, match="offset"):
            m.systematic(bad)
    q = m.flattened(0.0).clone()  # a density with zero-mass lines: no offset may pick them
    q[m.free.nonzero().flatten()[::2]] = 0.0
    for u in (0.0, 0.5, 0.99):
        picked = m.systematic(u, probabilities=q).bool() & m.free
        assert int(picked.sum()) == 12 and torch.all(q[picked] > 0)


def test_systematic_point_masks_keep_the_budget():
    m = _random_logits(BernoulliMask((16, 16), 8, 4, kind="point", corner_cut=True), 2)
    for u in (0.0, 0.3, 0.99):
        d = m.systematic(u)
        assert int(d.sum()) == m.budget and torch.all(d[m.fixed] == 1) and torch.all(d[m.excluded] == 0)


def test_density_logits_start_proportional_to_the_density():
    """A mask started from ``density_logits`` of a density whose mean exceeds the budget has
    renormalised probabilities proportional to that density (LOUPE scales them down)."""
    from fastmri_diffmask.masks.baselines import vd_density
    from fastmri_diffmask.masks.bernoulli import density_logits

    d = vd_density((64,), 2.0)
    m = BernoulliMask(64, 4, 8, logits=density_logits(d, floor=1e-6))
    p = m.probabilities().detach().numpy().astype(np.float64)
    free = m.free.numpy()
    ratio = p[free] / np.clip(d[free] / d.max(), 1e-6, None)
    assert np.allclose(ratio, ratio[0], rtol=1e-4) and abs(p.sum() - 16) < 1e-4


def test_flattened_density_keeps_the_budget_and_draws_follow_it():
    """``flattened(w)`` moves p' towards a flat density with the same budget: w = 1 is uniform on
    the free entries; draws from it are exact-budget, keep the centre, and follow it."""
    m = BernoulliMask(64, 4, 4)
    with torch.no_grad():
        m.logits.copy_(torch.linspace(-3, 3, 64))
    p = m.probabilities().detach()
    for w in (0.0, 0.3, 1.0):
        q = m.flattened(w)
        assert abs(float(q[m.free].sum()) - (m.budget - m.num_fixed)) < 1e-4 and torch.all(q[m.fixed] == 1)
    assert torch.allclose(m.flattened(0.0), p)
    flat = m.flattened(1.0)[m.free]
    assert torch.allclose(flat, torch.full_like(flat, m.target_mean))
    g = torch.Generator().manual_seed(0)
    q = m.flattened(0.5)
    draws = torch.stack([m.draw_exact(g, stratified=True, probabilities=q) for _ in range(3000)])
    assert torch.all(draws.sum(1) == 16) and torch.all(draws[:, m.fixed] == 1)
    assert torch.allclose(draws.mean(0), q, atol=0.05)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        m.flattened(1.5)
