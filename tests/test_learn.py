"""Mask learning: objective gradients, SSIM, determinism, exact resume, nested masks, the oracle
(a Gaussian prior whose best line mask is known) and the learn-mask CLI's bad-input handling."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.dataset import SliceData
from fastmri_diffmask.learn.loop import LearnConfig, learn_mask, learn_nested
from fastmri_diffmask.learn.objective import ObjectiveConfig, objective_loss
from fastmri_diffmask.learn.tweedie import Likelihood, one_step_estimate, reconstruction_loss, ssim, unrolled_estimate
from fastmri_diffmask.masks.bernoulli import BernoulliMask
from fastmri_diffmask.masks.file import load_mask_file
from fastmri_diffmask.physics import MultiCoilOperator, fft2c, percentile_scale, to_channels, to_complex
from fastmri_diffmask.prior.edm import EDMPrecond
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.prior.unet import UNet
from fastmri_diffmask.prior.weights import save_prior
from fastmri_diffmask.simulate import write_volume

torch.set_num_threads(1)
N = 32  # image side
SPIKES = [3, 9, 22, 28]  # isolated high-variance columns, away from the centre (14..17)


def _column_profile() -> torch.Tensor:
    col = 0.02 + torch.exp(-(torch.arange(N) - N // 2).abs().float() / 1.5)
    col[SPIKES] = 1.0
    return col


def _base_prior() -> GaussianPrior:
    mean = torch.full((N, N), 1.0, dtype=torch.complex64)
    return GaussianPrior(mean, (0.02 * _column_profile())[None].expand(N, N).clone())


def _slices(images: torch.Tensor, coils: int = 1) -> SliceData:
    n = images.shape[0]
    maps = torch.ones(n, coils, N, N, dtype=torch.complex64) / coils ** 0.5
    k = fft2c(maps * images[:, None])
    return SliceData(k, maps, images.abs(), ["x.h5"] * n, list(range(n)), torch.ones(n))


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Single-coil h5 files drawn from a Gaussian prior, and that prior fitted to the scaled
    images (the loop divides each image by its 99th percentile, so the prior it needs is the
    law of the *scaled* images; the fit keeps the column profile up to a constant)."""
    root = tmp_path_factory.mktemp("oracle")
    g = torch.Generator().manual_seed(0)
    base = _base_prior()
    for split, n in (("train", 24), ("val", 4)):
        img = base.sample(n, g)
        k = fft2c(img[:, None]).numpy()
        vol = {"kspace": k.astype(np.complex64), "reconstruction_rss": img.abs().numpy().astype(np.float32),
               "sens_maps": np.ones((n, 1, N, N), np.complex64), "image": img.numpy(), "noise_std": 0.0}
        write_volume(root / split / f"oracle_{split}.h5", vol)
    many = base.sample(4000, g)
    prior = GaussianPrior.fit(many / percentile_scale(many))
    path = save_prior(root / "gauss.safetensors", prior, prior.config)
    return root, path, prior


def _tiny_unet_prior() -> EDMPrecond:
    torch.manual_seed(0)
    net = UNet(in_channels=2, channels=(8, 16), blocks_per_level=1)
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)  # non-trivial output (it starts at zero)
    return EDMPrecond(net).eval().requires_grad_(False)


# -- objective -----------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["tweedie", "tweedie-x0", "unrolled"])
@pytest.mark.parametrize("form", ["paper", "linear"])
def test_gradients_reach_the_logits_through_a_unet(objective, form):
    prior = _tiny_unet_prior()
    g = torch.Generator().manual_seed(1)
    img = torch.complex(torch.randn(2, 16, 16, generator=g), torch.randn(2, 16, 16, generator=g))
    maps = torch.randn(2, 3, 16, 16, dtype=torch.complex64, generator=g)
    mask = BernoulliMask(16, 4, 2)
    cfg = ObjectiveConfig(objective=objective, mask_form=form, unroll_steps=2, unroll_grad="xt")
    objective_loss(prior, mask, to_channels(img), maps, cfg, g).backward()
    grad = mask.logits.grad
    assert torch.all(torch.isfinite(grad)) and float(grad[mask.free].abs().sum()) > 0


@pytest.mark.parametrize("loss", ["l2", "nl2", "l1", "ssim"])
def test_every_loss_gives_finite_nonzero_gradients(loss):
    prior = _base_prior()
    g = torch.Generator().manual_seed(2)
    x = to_channels(prior.sample(2, g))
    mask = BernoulliMask(N, 4, 4)
    cfg = ObjectiveConfig(loss=loss, mask_form="linear")
    objective_loss(prior, mask, x, torch.ones(2, 1, N, N, dtype=torch.complex64), cfg, g).backward()
    assert torch.all(torch.isfinite(mask.logits.grad)) and float(mask.logits.grad.abs().sum()) > 0


def test_unrolled_with_one_step_is_the_one_step_estimate():
    prior = _tiny_unet_prior()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 16, 16, generator=g)
    maps = torch.ones(2, 1, 16, 16, dtype=torch.complex64)
    km = (torch.rand(2, 1, 1, 16, generator=g) < 0.5).float()
    lik = Likelihood(maps, km, MultiCoilOperator(maps)(to_complex(x)))
    x_t, s = x + 0.5 * torch.randn(x.shape, generator=g), torch.full((2,), 0.5)
    for grad in ("xt", "x0"):
        a = one_step_estimate(prior, x_t, s, lik, 0.5, grad=grad)
        b = unrolled_estimate(prior, x_t, s[:, None], lik, 0.5, grad=grad)
        assert torch.allclose(a, b)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(4)
    a = torch.rand(2, 24, 24, generator=g, dtype=torch.float64)
    b = a + 0.1 * torch.randn(2, 24, 24, generator=g, dtype=torch.float64)
    rng = a.flatten(1).amax(1) - a.flatten(1).amin(1)
    ours = ssim(b, a, rng)
    for i in range(2):
        ref = structural_similarity(a[i].numpy(), b[i].numpy(), data_range=float(rng[i]))
        assert abs(float(ours[i]) - ref) < 1e-6
    x = to_channels(torch.complex(a.float(), 0 * a.float()))
    assert float(reconstruction_loss(x, x, "ssim")) < 1e-6


# -- loop ----------------------------------------------------------------------------------------
def _tiny_data(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    return _slices(_base_prior().sample(n, g), coils=2)


def test_resume_is_bit_identical(tmp_path):
    prior, train, val = _base_prior(), _tiny_data(0), _tiny_data(1, 3)
    cfg = LearnConfig(objective=ObjectiveConfig(objective="tweedie"), steps=9, batch=3, lr=0.05, tau_end=0.3,
                      lr_schedule="cosine", checkpoint_every=2)
    full, h_full = learn_mask(prior, train, val, "line", 4, 4, cfg, progress=False)
    ck = tmp_path / "run.ckpt"
    learn_mask(prior, train, val, "line", 4, 4, cfg, checkpoint=ck, stop_after=4, progress=False)
    resumed, h_res = learn_mask(prior, train, val, "line", 4, 4, cfg, checkpoint=ck, resume=True, progress=False)
    assert torch.equal(full.logits, resumed.logits)
    assert h_full == h_res


def test_resume_refuses_other_settings(tmp_path):
    from fastmri_diffmask.errors import UserError

    prior, train, val = _base_prior(), _tiny_data(0), _tiny_data(1, 3)
    ck = tmp_path / "run.ckpt"
    learn_mask(prior, train, val, "line", 4, 4, LearnConfig(steps=4), checkpoint=ck, stop_after=2, progress=False)
    with pytest.raises(UserError):
        learn_mask(prior, train, val, "line", 4, 4, LearnConfig(steps=4, lr=0.5), checkpoint=ck, resume=True,
                   progress=False)


def test_nested_masks_are_nested():
    prior, train, val = _base_prior(), _tiny_data(0), _tiny_data(1, 3)
    cfg = LearnConfig(objective=ObjectiveConfig(objective="tweedie-x0", mask_form="linear"), steps=6, batch=4)
    mask, binary, order, hists = learn_nested(prior, train, val, "line", [8, 4, 2], 4, cfg, progress=False)
    assert sorted(order.tolist()) == list(range(N))
    masks = {r: np.isin(np.arange(N), order[:round(N / r)]) for r in (8, 4, 2)}
    assert masks[8].sum() == 4 and masks[4].sum() == 8 and masks[2].sum() == 16
    assert np.all(masks[8] <= masks[4]) and np.all(masks[4] <= masks[2])
    assert np.array_equal(masks[2], binary.numpy() > 0)
    assert [h["acceleration"] for h in hists] == [8, 4, 2]


# -- CLI -----------------------------------------------------------------------------------------
def _cli(root, prior, out, *extra):
    """learn-mask on the oracle data; the refinement is off unless ``extra`` turns it on (the oracle
    tests are about the Bernoulli learner, and a later flag wins)."""
    return main(["learn-mask", "--data", str(root), "--prior", str(prior), "--acceleration", "4", "--out", str(out),
                 "--num-low-frequencies", "4", "--device", "cpu", "--quiet", "--refine-sweeps", "0", *extra])


def test_oracle_recovers_the_highest_variance_lines(oracle, tmp_path, capsys):
    """Single coil, noiseless: the posterior error of a line mask is the summed variance of the
    unmeasured lines (each unmeasured frequency costs v sigma^2 / (v + sigma^2) in the one-step
    objective, increasing in v), so the optimal mask is the centre plus the highest-variance
    columns. The four spikes carry > 3.5x the variance of any other non-centre column, so the gap
    between the optimum and any mask missing a spike is large against the gradient noise: we
    require the learned mask to be exactly the optimum (overlap 4 of 4 learned lines)."""
    root, path, prior = oracle
    var = prior.variance.sum(0)
    free = [i for i in range(N) if i not in range(14, 18)]
    best = sorted(sorted(free, key=lambda i: -float(var[i]))[:4])
    assert best == SPIKES
    out = tmp_path / "oracle.safetensors"
    # the paper's uniform start and top-k export (the defaults, a vd start and a DPS-chosen draw,
    # are for real anatomy, not for this oracle)
    assert _cli(root, path, out, "--steps", "60", "--batch", "4", "--lr", "0.05", "--init-density", "uniform",
                "--export", "topk") == 0
    mf = load_mask_file(out)
    learned = [i for i in np.flatnonzero(mf.mask) if i not in range(14, 18)]
    assert learned == SPIKES
    assert mf.num_sampled == 8 and mf.metadata["prior"]["id"] == "gaussian"
    assert mf.metadata["prior"]["sha256"] and mf.metadata["seed"] == 0 and mf.metadata["steps"] == 60
    assert (tmp_path / "oracle.png").is_file()
    assert not list(tmp_path.glob("*.ckpt*"))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["num_sampled"] == 8


def test_same_seed_gives_the_same_mask_file(oracle, tmp_path):
    root, path, _ = oracle
    outs = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for out in outs:
        assert _cli(root, path, out, "--steps", "6", "--objective", "tweedie", "--export", "quantile") == 0
    a, b = (load_mask_file(o) for o in outs)
    for key in ("mask", "probabilities", "logits"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    strip = lambda m: {k: v for k, v in m.items() if k not in ("created", "wall_seconds")}  # noqa: E731
    assert strip(a.metadata) == strip(b.metadata)


def _assert_refused(capsys, rc, out):
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error" in err
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_cli_bad_inputs_exit_2_without_output(oracle, tmp_path, capsys):
    root, path, _ = oracle
    out = tmp_path / "m.safetensors"
    # centre of 10 lines does not fit R = 4 on 32 columns (budget 8)
    _assert_refused(capsys, main(["learn-mask", "--data", str(root), "--prior", str(path), "--acceleration", "4",
                                  "--out", str(out), "--num-low-frequencies", "10", "--quiet"]), out)
    _assert_refused(capsys, _cli(root, path, out, "--acceleration", "1"), out)
    _assert_refused(capsys, _cli(root, tmp_path / "nope.safetensors", out), out)  # unknown prior
    small = GaussianPrior(torch.zeros(16, 16, dtype=torch.complex64), torch.ones(16, 16))
    _assert_refused(capsys, _cli(root, save_prior(tmp_path / "small.safetensors", small, small.config), out), out)
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _assert_refused(capsys, _cli(root, path, out, "--init-from", str(bad)), out)  # corrupt mask file
    _assert_refused(capsys, _cli(root, path, out, "--resume"), out)  # nothing to resume
    out.with_name(out.name + ".ckpt").write_bytes(b"garbage")
    _assert_refused(capsys, _cli(root, path, out, "--resume"), out)  # corrupt checkpoint
    other = BernoulliMask(16, 4, 4).to_mask_file()
    from fastmri_diffmask.masks.file import save_mask_file

    _assert_refused(capsys, _cli(root, path, out, "--init-from", str(save_mask_file(tmp_path / "w16.safetensors", other))), out)


def test_cli_nested_writes_an_ordering(oracle, tmp_path):
    root, path, _ = oracle
    out = tmp_path / "nested.safetensors"
    rc = main(["learn-mask", "--data", str(root), "--prior", str(path), "--acceleration", "4", "--out", str(out),
               "--nested", "--steps", "4", "--objective", "tweedie-x0", "--device", "cpu", "--quiet"])
    assert rc == 0
    mf = load_mask_file(out)
    assert mf.metadata["nested_accelerations"] == [16.0, 8.0, 4.0] and mf.num_low_frequencies == 2
    m16, m8, m4 = (mf.mask_at(r) for r in (16, 8, 4))
    assert (m16.sum(), m8.sum(), m4.sum()) == (2, 4, 8)
    assert np.all(m16 <= m8) and np.all(m8 <= m4) and np.array_equal(m4, mf.mask)


# -- library API (fastmri_diffmask.learn.api) ---------------------------------------------------------
def test_cli_flags_are_the_library_options_with_the_same_defaults():
    import argparse
    import dataclasses

    from fastmri_diffmask.cli import learn_mask as cli
    from fastmri_diffmask.learn.api import OPTION_NAMES, LearnMaskOptions

    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    actions = {a.dest: a for a in sub.choices["learn-mask"]._actions if a.option_strings and a.dest != "help"}
    assert set(actions) == set(OPTION_NAMES) | {"data", "prior", "kind", "acceleration", "out", "device"}
    assert {n: actions[n].default for n in OPTION_NAMES} == dataclasses.asdict(LearnMaskOptions())
    d = LearnMaskOptions()  # the defaults --help states
    assert (d.eta, d.sigma_mean, d.sigma_std, d.batch, d.lr) == (0.5, -1.2, 1.2, 2, 0.01)
    # no Adam step, then the refinement (line moves, point ring reweighting) chosen on validation
    # slices 4-9 (BENCHMARKS.md, issue 13, sessions 6 and 9)
    assert (d.steps, d.refine_sweeps) == (0, None)
    # line masks refine (2 sweeps), point masks do not since session 17 (their ring reweighting
    # lost to the unlearned start on validation under DPS); an explicit value wins for both
    assert [d.resolved(k, 8).refine_sweeps for k in ("line", "point")] == [2, 0]
    assert dataclasses.replace(d, refine_sweeps=1).resolved("point", 8).refine_sweeps == 1
    assert (d.refine_propose, d.refine_tries, d.refine_dds_steps, d.refine_slices,
            d.refine_moves) == ("gradient", 3, None, 4, "1,2,3")
    from fastmri_diffmask.learn.options import REFINE_DDS_STEPS
    assert REFINE_DDS_STEPS == {"line": 15, "point": 8}  # the judge's steps per kind (sessions 10 and 9)
    from fastmri_diffmask.learn.options import default_refine_classical
    # the judge averages in CG-SENSE for line masks at R >= 8 only (session 13, val 4-9)
    assert d.refine_classical is None
    assert [default_refine_classical(k, r) for k, r in (("line", 8), ("line", 12), ("line", 4), ("point", 8))] \
        == ["sense", "sense", "none", "none"]
    # the judge's warm start (session 8, val 4-9 with the multi-subject prior)
    assert (d.refine_init, d.refine_sigma_start, d.refine_eta, d.refine_churn) == ("sense", 0.5, 1.0, 0.0)
    # chosen by the validation ablation (BENCHMARKS.md): objective (b), DPS-selected export
    assert (d.objective, d.export, d.export_select, d.dds_steps, d.select_slices) == ("tweedie-x0", "sampled", "dds", 25, 4)
    # chosen by benchmarks/judge_study.py: DDS-25 (and DPS-50 + DC) judge like DPS-100; draws also from the 50/50 mix
    assert (d.select_dc_weight, d.export_flatten, d.export_draws) == (0.03, "0,0.5", 4)
    # systematic candidates (regular spacing, offsets 1/8 .. 7/8) beat stratified draws at R = 8 on validation
    assert d.export_sampling == "systematic"
    assert (d.init_density, d.init_power) == ("vd", 2.0)


def test_options_from_flags_convert_like_the_command_line():
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.learn.api import LearnMaskOptions

    o = LearnMaskOptions.from_flags({"seed": 3, "num_low_frequencies": 4},
                                    {"lr": "1e-3", "sigma-mean": -1, "steps": "7", "nested": True, "seed": None,
                                     "relaxed": False, "val_every": 0, "init-from": "m.safetensors"})
    assert (o.lr, o.sigma_mean, o.steps, o.nested, o.seed, o.relaxed, o.val_every, o.num_low_frequencies) == \
        (1e-3, -1.0, 7, True, 3, False, 0, 4)
    assert isinstance(o.sigma_mean, float) and o.init_from == "m.safetensors"
    for bad, needle in (({"stepz": 3}, "stepz"), ({"steps": "many"}, "--steps"), ({"steps": 2.5}, "--steps"),
                        ({"steps": True}, "--steps needs a value"), ({"nested": "yes"}, "--nested is a switch")):
        with pytest.raises(UserError, match=needle):
            LearnMaskOptions.from_flags(bad)


def test_library_call_writes_the_cli_mask_file(oracle, tmp_path, capsys):
    from fastmri_diffmask.learn.api import learn_mask_file, preview_path, summary

    root, path, _ = oracle
    assert _cli(root, path, tmp_path / "cli.safetensors", "--steps", "4", "--objective", "tweedie-x0",
                "--export", "quantile", "--seed", "1") == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = learn_mask_file(root, tmp_path / "lib.safetensors", 4, prior=str(path), device="cpu", quiet=True,
                          num_low_frequencies=4, steps=4, objective="tweedie-x0", export="quantile", seed=1,
                          refine_sweeps=0)
    assert out == tmp_path / "lib.safetensors" and preview_path(out).is_file()
    a, b = load_mask_file(tmp_path / "cli.safetensors"), load_mask_file(out)
    for key in ("mask", "probabilities", "logits"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    strip = lambda m: {k: v for k, v in m.items() if k not in ("created", "wall_seconds")}  # noqa: E731
    assert strip(a.metadata) == strip(b.metadata)
    assert printed == summary(tmp_path / "cli.safetensors")


def test_export_best_picks_the_optimum_among_draws_topk_and_quantile(oracle):
    """``export="best"``: the top-k, quantile and K stratified draws compete on the validation
    proxy. After learning on the oracle the top-k mask is the optimum of that proxy (see the
    oracle test), so "best" must return it, exact budget, and say which candidate won."""
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.learn.loop import export_mask

    root, _, prior = oracle
    train, val = load_slices(root, "train"), load_slices(root, "val")
    cfg = LearnConfig(steps=60, batch=4, lr=0.05, export="best", export_draws=6)
    mask, hist = learn_mask(prior, train, val, "line", 4, 4, cfg, progress=False)
    chosen = export_mask(mask, hist, "best")
    ex = hist["export"]
    assert len(ex["scores"]) == 8 and ex["labels"][:2] == ["topk", "quantile"]
    assert ex["chosen"] == int(np.argmin(ex["scores"])) and int(chosen.sum()) == 8
    assert ex["chosen_label"] == "topk" and torch.equal(chosen.bool(), mask.binarize("topk").bool())


def test_export_flatten_adds_flattened_families_without_changing_the_first(oracle):
    """``export_flatten=(0, 1)``: the draws of p' are those of a run without flattening (same
    seeds), then as many draws from the flat density join them, labelled; the winner is the
    proxy's optimum among all. A weight outside [0, 1] is refused."""
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.learn.loop import Validator, choose_sampled

    root, _, prior = oracle
    train, val = load_slices(root, "train"), load_slices(root, "val")
    cfg = LearnConfig(steps=10, batch=4, lr=0.05, export="sampled", export_draws=3)
    mask, hist = learn_mask(prior, train, val, "line", 4, 4, cfg, progress=False)
    both = dataclasses.replace(cfg, export_flatten=(0.0, 1.0))
    validator = Validator(prior, val, both, "cpu")
    ex = choose_sampled(mask, validator, both)
    assert ex["labels"] == ["draw 0", "draw 1", "draw 2", "flat 1 draw 0", "flat 1 draw 1", "flat 1 draw 2"]
    assert ex["scores"][:3] == pytest.approx(hist["export"]["scores"])
    assert ex["chosen"] == int(np.argmin(ex["scores"])) and int(np.sum(ex["mask"])) == 8
    assert ex["chosen_offset"] is None and ex["chosen_weight"] == (0.0 if ex["chosen"] < 3 else 1.0)
    with pytest.raises(UserError, match="flattening"):
        dataclasses.replace(cfg, export_flatten=(0.0, 2.0)).validate(4)


def test_systematic_candidates_are_the_density_offsets_and_need_no_seed(oracle):
    """``export_sampling="systematic"``: per density the candidates are ``systematic((i + 1/2) / K)``,
    labelled by offset, the same for every seed; the judge's best among them is exported."""
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.learn.loop import Validator, choose_sampled
    from fastmri_diffmask.learn.validate import candidate_masks

    root, _, prior = oracle
    train, val = load_slices(root, "train"), load_slices(root, "val")
    cfg = LearnConfig(steps=10, batch=4, lr=0.05, export="sampled", export_draws=4, export_sampling="systematic",
                      export_flatten=(0.0, 0.5))
    mask, hist = learn_mask(prior, train, val, "line", 4, 4, cfg, progress=False)
    draws, labels = candidate_masks(mask, cfg)
    assert labels == ["offset 0.125", "offset 0.375", "offset 0.625", "offset 0.875",
                      "flat 0.5 offset 0.125", "flat 0.5 offset 0.375", "flat 0.5 offset 0.625", "flat 0.5 offset 0.875"]
    assert torch.equal(draws[1], mask.systematic(0.375)) and torch.equal(draws[6], mask.systematic(0.625, mask.flattened(0.5)))
    again, _ = candidate_masks(mask, dataclasses.replace(cfg, seed=99))
    assert all(torch.equal(a, b) for a, b in zip(draws, again))
    ex = choose_sampled(mask, Validator(prior, val, cfg, "cpu"), cfg)
    assert ex["labels"] == labels and ex["chosen"] == int(np.argmin(ex["scores"]))
    assert torch.equal(torch.tensor(ex["mask"]), draws[ex["chosen"]]) and hist["export"]["labels"] == labels
    # the chosen candidate's density and offset (what the point refinement restarts from) rebuild it
    rebuilt = mask.systematic(ex["chosen_offset"], probabilities=mask.flattened(ex["chosen_weight"]))
    assert torch.equal(rebuilt, draws[ex["chosen"]])
    with pytest.raises(UserError, match="export sampling"):
        dataclasses.replace(cfg, export_sampling="jittered").validate(4)


def test_library_call_refuses_bad_export_choices_before_loading(tmp_path):
    """A study config's ``learn:`` keys reach ``learn_mask_file`` without argparse's choices: a bad
    export / sampling / judge is one clear error before the data or the prior are touched (the
    data folder here does not exist), and no file is written."""
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.learn.api import learn_mask_file

    out = tmp_path / "m.safetensors"
    for key, bad in (("export", "best-of"), ("export_sampling", "jittered"), ("export_select", "psnr"),
                     ("refine_classical", "bart"), ("refine_split", "test")):
        with pytest.raises(UserError, match=f"--{key.replace('_', '-')} must be one of"):
            learn_mask_file(tmp_path / "no-data", out, 4, prior="no-such-prior", device="cpu", quiet=True, **{key: bad})
    for key, bad, needle in (("recon_sigma_start", 0, "first noise level"), ("recon_init", "truth", "recon_init"),
                             ("objective", "dps", "objective"), ("refine_propose", "best", "refine-propose")):
        with pytest.raises(UserError, match=needle):
            learn_mask_file(tmp_path / "no-data", out, 4, prior="no-such-prior", device="cpu", quiet=True, **{key: bad})
    assert not out.exists()


def test_cli_refuses_bad_flatten_and_dc_weight(oracle, tmp_path, capsys):
    root, path, _ = oracle
    out = tmp_path / "m.safetensors"
    _assert_refused(capsys, _cli(root, path, out, "--export-flatten", "0,abc"), out)
    _assert_refused(capsys, _cli(root, path, out, "--export-flatten", "0,1.5"), out)
    _assert_refused(capsys, _cli(root, path, out, "--select-dc-weight", "0"), out)


def test_dds_judge_picks_the_draw_with_the_best_dds_psnr(oracle):
    """``export_select="dds"``: every candidate is scored by DDS on the first ``select_slices``
    validation slices (seeded, so a rescore agrees) and the best PSNR wins."""
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.learn.loop import Validator, choose_sampled

    root, _, prior = oracle
    train, val = load_slices(root, "train"), load_slices(root, "val")
    cfg = LearnConfig(steps=5, batch=4, lr=0.05, export="sampled", export_draws=3, export_select="dds",
                      dds_steps=6, select_slices=2)
    mask, _ = learn_mask(prior, train, val, "line", 4, 4, cfg, progress=False)
    validator = Validator(prior, val, cfg, "cpu")
    ex = choose_sampled(mask, validator, cfg)
    first = mask.draw_exact(torch.Generator().manual_seed(cfg.seed + 2), stratified=True)  # the first candidate
    assert len(ex["scores"]) == 3 and len(set(ex["scores"])) == 3  # three different masks, three scores
    assert ex["chosen"] == int(np.argmax([-s for s in ex["scores"]])) and int(np.sum(ex["mask"])) == 8
    assert -ex["scores"][0] == pytest.approx(validator.dds_psnr(first, "line", num_slices=2))


def test_steps_zero_exports_the_starting_density_with_the_same_candidates_and_judge(oracle):
    """``steps=0``: no update; the logits stay the start's and the export is exactly what the
    export of a fresh mask with those logits gives (the baseline a learned mask is measured
    against); a learning run with the same settings starts from the same candidates."""
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.learn.loop import Validator, choose_sampled
    from fastmri_diffmask.masks.baselines import vd_density
    from fastmri_diffmask.masks.bernoulli import density_logits

    root, _, prior = oracle
    train, val = load_slices(root, "train"), load_slices(root, "val")
    start = density_logits(vd_density((N,), 2.0))
    cfg = LearnConfig(steps=0, batch=4, export="sampled", export_draws=3, export_sampling="systematic")
    mask, hist = learn_mask(prior, train, val, "line", 4, 4, cfg, init_logits=start, progress=False)
    fresh = BernoulliMask(N, 4, 4, logits=start)
    assert torch.equal(mask.logits.detach(), fresh.logits.detach()) and hist["train"] == []
    want = choose_sampled(fresh, Validator(prior, val, cfg, "cpu"), cfg)
    assert hist["export"]["mask"] == want["mask"] and hist["export"]["scores"] == want["scores"]
    assert int(np.sum(hist["export"]["mask"])) == 8
    learned, _ = learn_mask(prior, train, val, "line", 4, 4, dataclasses.replace(cfg, steps=5, lr=0.5),
                            init_logits=start, progress=False)
    assert not torch.equal(learned.logits.detach(), fresh.logits.detach())
    with pytest.raises(UserError, match="steps must be >= 0"):
        dataclasses.replace(cfg, steps=-1).validate(4)


@pytest.mark.parametrize("extra", [("--optimizer", "greedy", "--objective", "dds", "--recon-steps", "2"),
                                   ("--optimizer", "greedy-search", "--search-candidates", "2", "--search-slices", "1",
                                    "--dds-steps", "2"),
                                   ("--steps", "3", "--export", "topk", "--refine-sweeps", "1", "--refine-moves", "1",
                                    "--refine-slices", "1", "--dds-steps", "2")])
def test_cli_other_learners_write_an_exact_budget_mask_file(oracle, tmp_path, capsys, extra):
    root, path, _ = oracle
    out = tmp_path / "m.safetensors"
    assert _cli(root, path, out, *extra) == 0
    mf = load_mask_file(out)
    assert mf.num_sampled == 8 and mf.mask[14:18].all()  # budget round(32 / 4), centre of 4 kept
    if "--refine-sweeps" in extra:
        ref = mf.metadata["refine"]
        assert ref["end"] >= ref["start"] and ref["sweeps_run"] >= 1
    else:
        assert mf.metadata["optimizer"] == extra[1] and len(mf.order) == 8
        assert [int(i) for i in mf.order[4:]] == [a["index"] for a in mf.metadata["greedy"]["additions"]]


def test_cli_refuses_bad_learner_options(oracle, tmp_path, capsys):
    root, path, _ = oracle
    out = tmp_path / "m.safetensors"
    _assert_refused(capsys, _cli(root, path, out, "--refine-sweeps", "1", "--refine-moves", "0"), out)
    _assert_refused(capsys, _cli(root, path, out, "--refine-sweeps", "1", "--kind", "point", "--optimizer", "greedy"), out)
    _assert_refused(capsys, _cli(root, path, out, "--refine-sweeps", "1", "--kind", "point", "--refine-factor", "1"), out)
    _assert_refused(capsys, _cli(root, path, out, "--optimizer", "greedy", "--nested"), out)
    _assert_refused(capsys, _cli(root, path, out, "--steps", "-1"), out)


def test_refinement_keeps_a_nested_order_consistent_with_the_mask(oracle, tmp_path, capsys):
    """After refining a nested mask, the first ``num_sampled`` entries of its order are exactly
    its sampled lines, and each coarser mask is inside it."""
    root, path, _ = oracle
    out = tmp_path / "m.safetensors"
    assert _cli(root, path, out, "--nested", "--steps", "2", "--num-low-frequencies", "2", "--refine-sweeps", "1",
                "--refine-slices", "1", "--refine-dds-steps", "2", "--refine-propose", "all") == 0
    mf = load_mask_file(out)
    assert "refine" in mf.metadata
    n = mf.num_sampled
    assert sorted(int(i) for i in mf.order[:n]) == [int(i) for i in np.flatnonzero(mf.mask)]
    coarse = mf.mask_at(8)
    assert (coarse <= mf.mask).all() and int(coarse.sum()) == 4


def test_point_masks_learn_with_the_defaults(oracle, tmp_path):
    """``learn-mask --kind point`` with no learner flags: the kind's defaults (no Adam step and,
    since session 17, no ring reweighting) keep the exact budget, record the resolved options, and
    give the same mask as asking for the unlearned start explicitly."""
    root, path, _ = oracle
    base = ["learn-mask", "--data", str(root), "--prior", str(path), "--kind", "point", "--acceleration", "8",
            "--num-low-frequencies", "4", "--device", "cpu", "--quiet"]
    out, start = tmp_path / "p.safetensors", tmp_path / "start.safetensors"
    assert main(base + ["--out", str(out)]) == 0
    assert main(base + ["--out", str(start), "--steps", "0", "--refine-sweeps", "0"]) == 0
    mf = load_mask_file(out)
    assert mf.mask.shape == (N, N) and mf.num_sampled == round(N * N / 8)
    assert mf.metadata["steps"] == 0 and "refine" not in mf.metadata
    assert mf.metadata["options"]["refine_sweeps"] == 0
    assert np.array_equal(mf.mask, load_mask_file(start).mask)


def test_point_masks_refine_their_density_by_rings(oracle, tmp_path):
    """``--kind point --refine-sweeps 1``: the ring reweighting runs after the export, keeps the
    exact budget and the centre, and never lowers its own training-slice score."""
    root, path, _ = oracle
    out = tmp_path / "p.safetensors"
    assert main(["learn-mask", "--data", str(root), "--prior", str(path), "--kind", "point", "--acceleration", "4",
                 "--out", str(out), "--num-low-frequencies", "4", "--device", "cpu", "--quiet", "--steps", "2",
                 "--refine-sweeps", "1", "--refine-rings", "3", "--refine-slices", "1", "--refine-dds-steps", "2"]) == 0
    mf = load_mask_file(out)
    assert mf.num_sampled == round(N * N / 4) and mf.mask[N // 2 - 2:N // 2 + 2, N // 2 - 2:N // 2 + 2].all()
    ref = mf.metadata["refine"]
    assert ref["end"] >= ref["start"] and len(ref["log_weights"]) == 3 and ref["reconstructions"] >= 1
