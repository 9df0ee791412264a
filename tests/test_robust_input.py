"""Bad fastMRI files through `recon`: exit 2, one line on stderr, nothing left in the output folder."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastmri_diffmask.cli.main import main

sys.path.insert(0, str(Path(__file__).parent))
from fastmri_files import write_multicoil_volume  # noqa: E402


def _good(path, seed=0):
    return write_multicoil_volume(path, num_slices=2, coils=2, height=32, width=32, recon=(24, 24), seed=seed,
                                  sens_maps=True)


def _replace(path, name, fn):
    """Replace dataset ``name`` of ``path`` by ``fn(old)`` (``None`` deletes it)."""
    with h5py.File(path, "a") as f:
        new = fn(f[name][()])
        del f[name]
        if new is not None:
            f[name] = new


def _poke(value, where=(1, 0, 3, 3)):
    def fn(a):
        a = a.copy()
        a[where[:a.ndim]] = value
        return a
    return fn


#: name -> (dataset, change, words the error line must hold)
BAD = {
    "rss_inf": ("reconstruction_rss", _poke(np.inf), ["reconstruction_rss", "NaN or Inf", "slice 1"]),
    "rss_nan": ("reconstruction_rss", _poke(np.nan), ["reconstruction_rss", "NaN or Inf"]),
    "kspace_nan": ("kspace", _poke(np.nan), ["kspace", "NaN or Inf", "slice 1"]),
    "kspace_inf": ("kspace", _poke(complex(0, np.inf)), ["kspace", "NaN or Inf"]),
    "kspace_2d": ("kspace", lambda k: k[0, 0], ["kspace must be a complex array", "(32, 32)"]),
    "kspace_real": ("kspace", lambda k: k.real, ["kspace must be a complex array", "float32"]),
    "kspace_empty": ("kspace", lambda k: k[:, :, :, :0], ["empty dimension"]),
    "rss_slices": ("reconstruction_rss", lambda r: r[:1], ["reconstruction_rss", "slices=2"]),
    "rss_2d": ("reconstruction_rss", lambda r: r[0], ["reconstruction_rss", "slices=2"]),
    "maps_shape": ("sens_maps", lambda s: s[:, :1], ["sens_maps", "must match"]),
    "maps_nan": ("sens_maps", _poke(np.nan), ["sens_maps", "NaN or Inf"]),
}


def _recon_argv(data, out, method="zero-filled"):
    return ["recon", "--data", str(data), "--split", "test", "--mask-type", "equispaced_fraction",
            "--acceleration", "4", "--num-low-frequencies", "4", "--method", method, "--sens-maps", "file",
            "--out", str(out), "--device", "cpu"]


def _assert_refused(rc, err, out, words):
    assert rc == 2, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and "\r" not in lines[0], repr(err)
    assert lines[0].startswith("fastmri-diffmask recon: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    # a good file first, then the bad one: the good one's output must not be left behind either
    _good(tmp_path / "data" / "test" / "a_good.h5")
    bad = _good(tmp_path / "data" / "test" / "b_bad.h5", seed=1)
    name, change, words = BAD[case]
    _replace(bad, name, change)
    out = tmp_path / "out"
    rc = main(_recon_argv(tmp_path / "data", out))
    _assert_refused(rc, capsys.readouterr().err, out, words + ["b_bad.h5"])


def test_refusal_leaves_an_existing_output_folder_as_it_was(tmp_path, capsys):
    _good(tmp_path / "data" / "test" / "a_good.h5")
    _replace(_good(tmp_path / "data" / "test" / "b.h5"), "reconstruction_rss", _poke(np.inf))
    out = tmp_path / "out"
    (out / "reconstructions").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    rc = main(_recon_argv(tmp_path / "data", out))
    assert rc == 2 and len(capsys.readouterr().err.strip().split("\n")) == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["notes.txt", "reconstructions"]


def test_failure_after_progress_prints_its_own_line_and_leaves_no_partial_output(tmp_path, capsys, monkeypatch):
    # the second volume fails mid-run, after the first was reconstructed and the bar drawn
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.recon import run as recon_run

    for i in range(2):
        _good(tmp_path / "data" / "test" / f"v{i}.h5", seed=i)
    real, calls = recon_run.reconstruct_slices, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise UserError("the sampler diverged; lower --zeta")
        return real(*a, **kw)

    monkeypatch.setattr(recon_run, "reconstruct_slices", flaky)
    out = tmp_path / "out"
    rc = main(_recon_argv(tmp_path / "data", out))
    err = capsys.readouterr().err
    assert rc == 2 and len(calls) == 2
    assert "recon zero-filled" in err  # the bar was on screen...
    errors = [line for line in err.split("\n") if "error:" in line]
    assert errors == ["fastmri-diffmask recon: error: the sampler diverged; lower --zeta"], repr(err)  # ...not on its line
    assert not out.exists(), sorted(out.rglob("*"))  # v0's finished reconstruction is not left behind


def test_cli_subprocess_inf_target(tmp_path):
    _replace(_good(tmp_path / "data" / "test" / "x.h5"), "reconstruction_rss", _poke(np.inf))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "fastmri_diffmask.cli.main"] + _recon_argv(tmp_path / "data", out),
                       capture_output=True, text=True, env=env, timeout=300)
    _assert_refused(p.returncode, p.stderr, out, ["x.h5", "reconstruction_rss holds NaN or Inf"])
    assert p.stdout == ""


def test_good_files_still_reconstruct_and_leave_no_staging_folder(tmp_path, capsys):
    for i in range(2):
        _good(tmp_path / "data" / "test" / f"v{i}.h5", seed=i)
    out = tmp_path / "out"
    assert main(_recon_argv(tmp_path / "data", out)) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "metrics.csv", "metrics.json", "reconstructions", "reconstructions/v0.h5", "reconstructions/v1.h5"]
    with h5py.File(out / "reconstructions" / "v1.h5") as f:
        assert f["reconstruction"].shape == (2, 24, 24)


# -- progress while compare/demo learn a mask -------------------------------------------------------
def test_compare_shows_progress_while_it_learns_a_mask_and_is_silent_without(tmp_path, capsys):
    from fastmri_diffmask.compare.config import parse_config
    from fastmri_diffmask.compare.engine import run_study

    data = tmp_path / "data"
    assert main(["make-data", "--out", str(data), "--split", "train,val,test", "--size", "32", "--coils", "4",
                 "--slices-per-file", "5"]) == 0
    raw = {"data": str(data), "split": "test", "num_slices": 2, "kind": "line", "accelerations": [4],
           "num_low_frequencies": {4: 6}, "sens_maps": "file", "methods": [{"name": "zero-filled"}],
           "masks": [{"name": "learned", "type": "learned_diffusion",
                      "learn": {"steps": 2, "num_train": 3, "num_val": 2, "export": "topk"}}]}
    capsys.readouterr()
    run_study(parse_config(raw), tmp_path / "loud", device="cpu")
    err = capsys.readouterr().err
    assert "compare: learning masks" in err and "learned R=4" in err  # the outer bar, naming the mask
    assert "learn-mask R=4" in err  # learn-mask's own bar under it
    run_study(parse_config(raw), tmp_path / "quiet", device="cpu", progress=False)
    assert capsys.readouterr().err == ""
    assert (tmp_path / "quiet" / "masks" / "learned_R4.safetensors").is_file()
    assert len(list((tmp_path / "quiet" / "cells").glob("*.json"))) == 1


def test_the_demo_config_does_not_silence_learning():
    from fastmri_diffmask.cli.demo import demo_config_path
    from fastmri_diffmask.compare.config import load_config

    learned = [m for m in load_config(demo_config_path()).masks if m.type == "learned_diffusion"]
    assert learned and all(not (m.learn or {}).get("quiet") for m in learned)
