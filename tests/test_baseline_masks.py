"""Baseline masks: fastMRI's own, variable-density random, Poisson disc (sigpy and BART)."""

import shutil

import numpy as np
import pytest
from fastmri.data.subsample import create_mask_for_mask_type

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.masks.baselines import (
    FASTMRI_MASK_TYPES,
    LINE_MASK_TYPES,
    MASK_TYPES,
    POINT_MASK_TYPES,
    BaselineMask,
    acceleration_of,
    baseline_mask,
    centre_mask,
)

LINE_SHAPE = (15, 96, 122)  # (coils, H, W): W = 122 columns, an even width with an odd centre
POINT_SHAPE = (48, 40)  # small ky-kz plane: Poisson generators are slow


def _params(mask_type):
    marks = []
    if mask_type == "poisson_bart" and shutil.which("bart") is None:
        marks.append(pytest.mark.skip(reason="bart binary not installed"))
    return pytest.param(mask_type, marks=marks)


def _check_common(bm, mask_type, shape):
    assert isinstance(bm, BaselineMask)
    assert bm.mask_type == mask_type
    assert bm.mask.dtype == np.float32
    assert bm.mask.shape == shape
    assert set(np.unique(bm.mask)) <= {0.0, 1.0}
    # the reported acceleration is the exact achieved one
    assert bm.acceleration == pytest.approx(bm.mask.size / bm.mask.sum(), rel=1e-12)
    assert bm.acceleration == acceleration_of(bm.mask)
    # the fully sampled centre, placed like fastMRI's, really is sampled
    centre = centre_mask(shape, bm.num_low_frequencies) > 0
    assert bm.mask[centre].all()


@pytest.mark.parametrize("mask_type", [_params(t) for t in LINE_MASK_TYPES])
@pytest.mark.parametrize("acceleration", [4, 8])
def test_line_masks(mask_type, acceleration):
    bm = baseline_mask(mask_type, LINE_SHAPE, acceleration, num_low_frequencies=8, seed=3)
    _check_common(bm, mask_type, (LINE_SHAPE[-1],))
    budget = round(LINE_SHAPE[-1] / acceleration)
    n = bm.mask.sum()
    if mask_type == "vd_random":
        assert n == budget
    elif mask_type.endswith("_fraction"):  # fastMRI's masks that account for the centre
        assert abs(n - budget) <= max(2, 0.1 * budget)
    else:  # fastMRI's equispaced / magic / random add the centre on top of ~W/R lines
        assert bm.num_low_frequencies <= n <= budget + bm.num_low_frequencies + 6


@pytest.mark.parametrize("mask_type", [_params(t) for t in POINT_MASK_TYPES])
def test_point_masks(mask_type):
    bm = baseline_mask(mask_type, POINT_SHAPE, 4, num_low_frequencies=6, seed=1)
    _check_common(bm, mask_type, POINT_SHAPE)
    budget = round(np.prod(POINT_SHAPE) / 4)
    if mask_type == "vd_random_2d":
        assert bm.mask.sum() == budget
    else:  # searched to the budget as closely as the Poisson-disc generator allows
        assert abs(bm.mask.sum() - budget) <= 0.03 * budget
        assert abs(bm.acceleration - 4) < 0.15


@pytest.mark.parametrize(
    "width, acceleration, num_low",
    [(128, 4, 10), (320, 8, 16), (368, 6, 24), (101, 3.3, 7), (640, 16, 16), (33, 2, 0)],
)
@pytest.mark.parametrize("mask_type", ["vd_random", "vd_random_2d"])
def test_vd_masks_hit_the_exact_budget(mask_type, width, acceleration, num_low):
    shape = (width,) if mask_type == "vd_random" else (width // 2 + 3, width)
    bm = baseline_mask(mask_type, shape, acceleration, num_low_frequencies=num_low, seed=7)
    n_total = int(np.prod(bm.mask.shape))
    assert bm.mask.sum() == round(n_total / acceleration)
    assert bm.acceleration == n_total / bm.mask.sum()


def test_fastmri_masks_are_fastmri_and_seeded():
    h, w = LINE_SHAPE[-2:]
    for mask_type in FASTMRI_MASK_TYPES:
        a = baseline_mask(mask_type, LINE_SHAPE, 4, center_fraction=0.08, seed=11)
        b = baseline_mask(mask_type, LINE_SHAPE, 4, center_fraction=0.08, seed=11)
        np.testing.assert_array_equal(a.mask, b.mask)
        func = create_mask_for_mask_type(mask_type, [0.08], [4])
        ref, num_low = func((1, h, w, 1), seed=11)
        np.testing.assert_array_equal(a.mask, ref.numpy().reshape(w))
        assert a.num_low_frequencies == num_low
    r1 = baseline_mask("random", LINE_SHAPE, 4, seed=1).mask
    r2 = baseline_mask("random", LINE_SHAPE, 4, seed=2).mask
    assert not np.array_equal(r1, r2)


@pytest.mark.parametrize("mask_type", ["vd_random", "vd_random_2d", "poisson_sigpy"])
def test_own_masks_are_seeded(mask_type):
    shape = POINT_SHAPE if mask_type in POINT_MASK_TYPES else LINE_SHAPE
    a = baseline_mask(mask_type, shape, 4, num_low_frequencies=6, seed=5).mask
    b = baseline_mask(mask_type, shape, 4, num_low_frequencies=6, seed=5).mask
    c = baseline_mask(mask_type, shape, 4, num_low_frequencies=6, seed=6).mask
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_vd_random_density_falls_off():
    w = 256
    masks = np.stack([baseline_mask("vd_random", (w,), 6, num_low_frequencies=8, seed=s).mask for s in range(20)])
    freq = masks.mean(0)
    dist = np.abs(np.arange(w) - w / 2)
    inner = freq[(dist > 8) & (dist < w / 4)].mean()
    outer = freq[dist >= w / 4].mean()
    assert inner > 2 * outer


def test_default_centre_follows_fastmri_pairing():
    assert baseline_mask("vd_random", (320,), 4).num_low_frequencies == round(320 * 0.08)
    assert baseline_mask("vd_random", (320,), 8).num_low_frequencies == round(320 * 0.04)
    assert baseline_mask("vd_random", (320,), 4, center_fraction=0.05).num_low_frequencies == 16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask_type="gaussian"), "unknown mask type"),
        (dict(acceleration=1), "acceleration must be > 1"),
        (dict(acceleration=0.5), "acceleration must be > 1"),
        (dict(acceleration=16, num_low_frequencies=40), "centre alone"),
        (dict(mask_type="equispaced", acceleration=16, num_low_frequencies=40), "centre alone"),
        (dict(mask_type="vd_random_2d", acceleration=64, num_low_frequencies=30), "centre alone"),
        (dict(num_low_frequencies=8, center_fraction=0.1), "not both"),
        (dict(mask_type="equispaced", acceleration=4.5), "integer acceleration"),
        (dict(mask_type="poisson_sigpy", shape=(128,)), "too small"),
        (dict(center_fraction=1.5), "center_fraction"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(mask_type="vd_random", shape=(64, 128), acceleration=4)
    args.update(kwargs)
    with pytest.raises(UserError, match=match) as err:
        baseline_mask(**args)
    assert "\n" not in str(err.value)


def test_acceleration_of():
    assert acceleration_of(np.array([1, 0, 0, 1], dtype=bool)) == 2.0
    assert acceleration_of(np.ones((4, 5))) == 1.0
    assert acceleration_of(np.zeros(3)) == float("inf")
    assert set(MASK_TYPES) == set(LINE_MASK_TYPES) | set(POINT_MASK_TYPES)
