"""The scripts in ``examples/`` run as they are (subprocesses, from another working directory),
so they cannot rot: cheaply on tiny data, and (slow) with their defaults on the embedded data."""

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.learn.loop import default_num_low_frequencies
from fastmri_diffmask.masks.file import load_mask_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SIZE, R = 64, 4  # 64 columns at R = 4: 16 lines, learn-mask's default centre (ESPIRiT needs >= 6)
CENTRE = default_num_low_frequencies(SIZE, R)


def _run(script: str, *args, cwd: Path, timeout: float = 300) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    p = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def test_examples_are_short_scripts_with_usage():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["compare_bart.py", "export_sequence.py", "fastmri_transform.py", "learn_mask.py"]
    for name in scripts:
        text = (EXAMPLES / name).read_text()
        assert len(text.splitlines()) < 60, f"{name} is longer than 60 lines"
        assert text.startswith('"""') and f"python examples/{name}" in text, f"{name} needs a docstring with usage"


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Tiny make-data output and the mask ``learn_mask.py`` learns on it."""
    work = tmp_path_factory.mktemp("examples")
    assert main(["make-data", "--out", str(work / "data"), "--size", str(SIZE), "--coils", "4"]) == 0
    out = _run("learn_mask.py", "--data", "data", "--acceleration", R, "--steps", 6, "--out", "m.safetensors", cwd=work)
    return work, out


def test_learn_mask_writes_a_budget_exact_mask_file(learned):
    work, out = learned
    mf = load_mask_file(work / "m.safetensors")
    assert mf.kind == "line" and mf.mask.shape == (SIZE,) and mf.num_sampled == round(SIZE / R)
    assert mf.acceleration == R and mf.num_low_frequencies == CENTRE
    columns = [int(c) for c in re.search(r"sampled columns: \[(.*)\]", out).group(1).split(",")]
    assert columns == np.flatnonzero(mf.mask).tolist()


def test_fastmri_transform_serves_the_learned_mask(learned):
    work, _ = learned
    # sampled mode: a fresh budget-exact draw per volume (the slow test runs the default, fixed)
    out = _run("fastmri_transform.py", "--data", "data/test", "--mask", "m.safetensors", "--mode", "sampled", cwd=work)
    lines = [line for line in out.splitlines() if "columns" in line]
    assert len(lines) == 4 and all(f"{SIZE // R} of {SIZE} columns, centre {CENTRE}" in line for line in lines), out
    assert re.search(r"^\d+ slices served by LearnedDiffusionMaskFunc.*mode='sampled'", out, re.M)


def test_export_sequence_round_trips(learned):
    work, _ = learned
    out = _run("export_sequence.py", "--mask", "m.safetensors", "--out", "seq", "--order", "importance", cwd=work)
    mf = load_mask_file(work / "m.safetensors")
    assert (work / "seq.h5").is_file() and f"{mf.num_sampled} readouts ({CENTRE} calibration)" in out
    with open(work / "seq.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["ky"]) for r in rows) == np.flatnonzero(mf.mask).tolist()
    assert [int(r["order"]) for r in rows] == list(range(len(rows)))


def test_compare_bart_scores_both_masks(learned):
    work, _ = learned
    out = _run("compare_bart.py", "--data", "data", "--mask", "m.safetensors", "--num-slices", 2, cwd=work)
    scores = dict(re.findall(r"^\s*(\w+): 16 lines \(R = 4\.00\)\s+PSNR ([\d.]+) dB", out, re.M))
    assert set(scores) == {"learned", "equispaced"}, out
    assert all(10 < float(v) < 60 for v in scores.values())


@pytest.mark.slow
def test_examples_run_with_their_defaults_in_under_two_minutes(tmp_path):
    """The documented sequence on the embedded 128^2 data, each script with its defaults."""
    assert main(["make-data", "--out", str(tmp_path / "runs" / "data")]) == 0
    for script in ("learn_mask.py", "fastmri_transform.py", "export_sequence.py", "compare_bart.py"):
        t0 = time.time()
        _run(script, cwd=tmp_path, timeout=240)
        assert time.time() - t0 < 120, f"{script} took {time.time() - t0:.0f} s"
    assert load_mask_file(tmp_path / "runs" / "examples" / "learned_R8.safetensors").num_sampled == 16
