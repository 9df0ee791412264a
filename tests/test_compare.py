"""The ``compare`` command end to end on tiny data: report files, resume, shards and merge, the
paired statistics, bad configs, and every shipped study config in ``recon_configs/``."""

import csv
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.compare import report
from fastmri_diffmask.compare.config import load_config
from fastmri_diffmask.compare.engine import all_cells, shard_cells
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.simulate import simulate_volume, write_volume

ROOT = Path(__file__).resolve().parents[1]
N = 32
ACCELS = [2, 4]
SEEDS = {"equi": 1, "vd": 2}
METHODS = ["zero-filled", "bart-l1"]
NUM_SLICES = 4  # 2 files x 2 slices
KEY = ("acceleration", "mask", "seed", "method", "fname", "slice")


def _phantoms(num: int, rng: np.random.Generator) -> np.ndarray:
    """Magnitude slices: an ellipse with a few brighter discs."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, N), np.linspace(-1, 1, N), indexing="ij")
    out = []
    for _ in range(num):
        img = ((yy / 0.8) ** 2 + (xx / 0.65) ** 2 < 1).astype(np.float32)
        for cy, cx, r in rng.uniform([-0.4, -0.4, 0.1], [0.4, 0.4, 0.3], size=(3, 3)):
            img += 0.6 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2)
        out.append(img)
    return np.stack(out)


def _config(data: Path, **overrides) -> dict:
    cfg = {
        "data": str(data), "split": "test", "kind": "line", "accelerations": ACCELS,
        # ESPIRiT needs >= 6 centre lines; at R = 4 the budget is 8 of 32 lines
        "num_low_frequencies": {2: 8, 4: 6}, "sens_maps": "espirit-bart",
        "masks": [{"name": "equi", "type": "equispaced_fraction"}, {"name": "vd", "type": "vd_random", "seeds": 2}],
        "methods": METHODS, "reference": "equi",
    }
    cfg.update(overrides)
    return cfg


def _write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _compare(config: Path, out: Path, *flags) -> int:
    return main(["compare", "--config", str(config), "--out", str(out), "--device", "cpu", *flags])


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _without_timing(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted((k, v) for k, v in r.items() if k != "seconds")) for r in rows)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for i in range(2):
        rng = np.random.default_rng(i)
        write_volume(root / "data" / "test" / f"vol{i}.h5", simulate_volume(_phantoms(2, rng), 4, 40.0, rng))
    config = _write_config(root / "study.yaml", _config(root / "data"))
    out = root / "full"
    assert _compare(config, out) == 0
    return root, config, out


# -- (a) a full run ------------------------------------------------------------------------------
def test_full_run_writes_one_row_per_cell_and_slice(study):
    _, _, out = study
    rows = _rows(out)
    cells = [(r, m, s, meth) for r in ACCELS for m, n in SEEDS.items() for s in range(n) for meth in METHODS]
    assert len(rows) == len(cells) * NUM_SLICES
    keys = {tuple(r[k] for k in KEY) for r in rows}
    assert len(keys) == len(rows), "duplicate (R, mask, seed, method, slice) rows"
    assert {(float(r), m, str(s), meth) for r, m, s, meth in cells} == {
        (float(r["acceleration"]), r["mask"], r["seed"], r["method"]) for r in rows}
    for r in rows:
        assert np.isfinite(float(r["psnr"])) and 0 < float(r["ssim"]) <= 1
        # baseline line masks hit the budget round(32 / R) exactly here
        assert float(r["achieved_acceleration"]) == pytest.approx(float(r["acceleration"]))
    # the same mask under CS beats zero-filling on average (the reconstructors really ran)
    psnr = defaultdict(list)
    for r in rows:
        psnr[r["method"]].append(float(r["psnr"]))
    assert np.mean(psnr["bart-l1"]) > np.mean(psnr["zero-filled"])


def test_full_run_writes_summary_paired_and_figures(study):
    _, _, out = study
    summary = (out / "summary.md").read_text()
    assert "## R = 2" in summary and "## R = 4" in summary and "Paired differences (equi minus other)" in summary
    paired = json.loads((out / "paired.json").read_text())
    # one entry per (R, method, metric) against the one other mask
    assert {(p["acceleration"], p["method"], p["metric"], p["versus"]) for p in paired} == {
        (float(r), meth, metric, "vd") for r in ACCELS for meth in METHODS for metric in report.METRICS}
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["masks.png", "quality_vs_R.png", "recon_R2.png", "recon_R4.png"]
    for p in (out / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the summary's table holds the mean PSNR of the CSV rows, per (R, mask, method)
    rows = _rows(out)
    mean = np.mean([float(r["psnr"]) for r in rows if r["acceleration"] == "4.0" and r["mask"] == "vd"
                    and r["method"] == "bart-l1"])
    section = summary.split("## R = 4")[1]
    vd_line = next(line for line in section.splitlines() if line.startswith("| vd |"))
    header = next(line for line in section.splitlines() if line.startswith("| mask |"))
    col = [c.strip() for c in header.split("|")].index("bart-l1")
    assert float(vd_line.split("|")[col].split("/")[0]) == pytest.approx(mean, abs=0.006)


# -- (b) resume ------------------------------------------------------------------------------------
def test_rerun_skips_every_finished_cell(study, monkeypatch):
    _, config, out = study
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was reconstructed again")

    monkeypatch.setattr("fastmri_diffmask.recon.run.reconstruct_slices", fail)
    assert _compare(config, out) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == before


def test_rerun_redoes_only_a_missing_cell(study, monkeypatch, tmp_path):
    import shutil

    from fastmri_diffmask.recon import run as recon_run

    _, config, full = study
    out = tmp_path / "resume"
    shutil.copytree(full / "cells", out / "cells")
    victim = out / "cells" / "R4_vd_s1_bart-l1.json"
    victim.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    calls = []
    real = recon_run.reconstruct_slices

    def counting(kspace, mask2d, *args, **kwargs):
        calls.append(mask2d.sum())
        return real(kspace, mask2d, *args, **kwargs)

    monkeypatch.setattr(recon_run, "reconstruct_slices", counting)
    assert _compare(config, out) == 0
    assert len(calls) == 1
    assert victim.is_file()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json") if p != victim} == before
    assert _without_timing(_rows(out)) == _without_timing(_rows(full))


def test_resume_with_changed_settings_is_refused_in_one_line(study, tmp_path, capsys):
    # A finished cell records its resolved settings; changing an option (here BART's lamda, which
    # the cell id does not name) must not silently reuse the old cell.
    import shutil

    root, _, full = study
    out = tmp_path / "changed"
    shutil.copytree(full / "cells", out / "cells")
    cfg = _config(root / "data", methods=["zero-filled", {"name": "bart-l1", "lamda": 0.05}])
    config = _write_config(tmp_path / "changed.yaml", cfg)
    capsys.readouterr()
    assert _compare(config, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lamda" in err and "bart-l1" in err, err
    assert not (out / "results.csv").exists()


# -- (c) shards ------------------------------------------------------------------------------------
def test_shards_then_merge_equal_the_unsharded_run(study, tmp_path):
    _, config, full = study
    out = tmp_path / "sharded"
    assert _compare(config, out, "--shard", "0/2") == 0
    first = {p.name for p in (out / "cells").glob("*.json")}
    assert not (out / "results.csv").exists(), "a shard must not merge"
    assert 0 < len(first) < len(list((full / "cells").glob("*.json")))
    assert _compare(config, out, "--shard", "1/2") == 0
    assert _compare(config, out, "--merge-only") == 0
    assert {p.name for p in (out / "cells").glob("*.json")} == {p.name for p in (full / "cells").glob("*.json")}
    assert _without_timing(_rows(out)) == _without_timing(_rows(full))
    assert json.loads((out / "paired.json").read_text()) == json.loads((full / "paired.json").read_text())


def test_merge_with_another_reference_flips_the_paired_differences(study, tmp_path, capsys):
    # --reference re-takes the paired differences against another mask of the config: vd minus
    # equi is minus (equi minus vd), slice for slice; a name that is no mask is one line, exit 2.
    import shutil

    _, config, full = study
    out = tmp_path / "reref"
    shutil.copytree(full / "cells", out / "cells")
    assert _compare(config, out, "--merge-only", "--reference", "vd") == 0
    key = lambda row: (row["acceleration"], row["method"], row["metric"])  # noqa: E731
    before = {key(r): r for r in json.loads((full / "paired.json").read_text()) if r["versus"] == "vd"}
    after = {key(r): r for r in json.loads((out / "paired.json").read_text()) if r["versus"] == "equi"}
    assert before and set(before) == set(after)
    for k, row in before.items():
        assert after[k]["mean_diff"] == pytest.approx(-row["mean_diff"], abs=1e-9)
    capsys.readouterr()
    assert _compare(config, out, "--merge-only", "--reference", "nope") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "equi" in err, err


def test_merge_only_without_cells_exits_2(study, tmp_path, capsys):
    assert _compare(study[1], tmp_path / "empty", "--merge-only") == 2
    assert "no finished cells" in capsys.readouterr().err


def test_shard_cells_partition_the_cells(study):
    cfg = load_config(study[1])
    cells = all_cells(cfg)
    parts = [shard_cells(cells, f"{i}/3") for i in range(3)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in cells) and len(set(ids)) == len(ids)
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(UserError):
            shard_cells(cells, bad)


# -- (d) paired statistics -------------------------------------------------------------------------
def _exact_wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided exact signed-rank p-value by enumerating all sign patterns (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(diff))) + 1
    w_plus = ranks[diff > 0].sum()
    totals = np.array([sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(diff))])
    tail = min((totals <= w_plus).mean(), (totals >= w_plus).mean())
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("diff", [[0.3, 1.1, 0.7, 2.0, 0.2], [0.5, -0.1, 0.9, 1.4, 0.35, -0.6, 2.2],
                                  [-1.0, 0.4, -0.25, 0.8, -1.7, 0.1]])
def test_wilcoxon_p_matches_scipy_and_exact_enumeration(diff):
    from scipy.stats import wilcoxon

    diff = np.array(diff)
    p = report.wilcoxon_p(diff)
    assert p == pytest.approx(wilcoxon(diff).pvalue)
    assert p == pytest.approx(_exact_wilcoxon_p(diff))


def test_wilcoxon_p_is_nan_without_differences():
    assert np.isnan(report.wilcoxon_p(np.zeros(5)))
    assert np.isnan(report.wilcoxon_p(np.array([1.0])))


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_slices():
    rng = np.random.default_rng(3)
    small = rng.normal(0.5, 1.0, 10)
    large = rng.normal(0.5, 1.0, 400)
    for diff in (small, large):
        lo, hi = report.bootstrap_ci(diff)
        assert lo < diff.mean() < hi
    assert np.subtract(*report.bootstrap_ci(large)[::-1]) < np.subtract(*report.bootstrap_ci(small)[::-1])
    assert report.bootstrap_ci(small) == report.bootstrap_ci(small), "the CI must be reproducible"
    assert report.bootstrap_ci(np.full(6, 0.25)) == pytest.approx((0.25, 0.25))
    assert all(np.isnan(report.bootstrap_ci(np.array([1.0]))))


def test_paired_table_is_reference_minus_other_from_the_csv(study):
    _, _, out = study
    rows = _rows(out)
    # by hand: average the seeds of each mask per slice, then reference minus other per slice
    per = defaultdict(list)
    for r in rows:
        per[(float(r["acceleration"]), r["method"], r["mask"], r["fname"], r["slice"])].append(r)
    paired = json.loads((out / "paired.json").read_text())
    assert paired
    for p in paired:
        diffs = []
        for (r, meth, mask, fname, sl), group in per.items():
            if (r, meth, mask) != (p["acceleration"], p["method"], "equi"):
                continue
            ref = np.mean([float(g[p["metric"]]) for g in group])
            other = np.mean([float(g[p["metric"]]) for g in per[(r, meth, p["versus"], fname, sl)]])
            assert len(per[(r, meth, p["versus"], fname, sl)]) == SEEDS[p["versus"]]
            diffs.append(ref - other)
        assert p["n"] == len(diffs) == NUM_SLICES
        assert p["mean_diff"] == pytest.approx(np.mean(diffs), abs=1e-5)
        assert p["ci_low"] <= p["mean_diff"] <= p["ci_high"]


# -- (e) bad configs ---------------------------------------------------------------------------------
BAD = {
    "unknown key": ({"colour": "red"}, "unknown key"),
    "unknown method": ({"methods": ["fista"]}, "unknown method"),
    "unknown method option": ({"methods": [{"name": "bart-l1", "lambda": 0.1}]}, "unknown option"),
    "method without name": ({"methods": [{"lamda": 0.1}]}, "'name'"),
    "unknown mask type": ({"masks": [{"name": "s", "type": "spiral"}], "reference": None}, "unknown type 'spiral'"),
    "unknown mask key": ({"masks": [{"name": "e", "type": "random", "seed": 2}], "reference": None}, "unknown: seed"),
    "zero seeds": ({"masks": [{"name": "e", "type": "random", "seeds": 0}], "reference": None}, "seeds"),
    "learned without file or learn": ({"masks": [{"name": "l", "type": "learned_diffusion"}], "reference": None},
                                      "needs 'file' or 'learn'"),
    "unknown learn flag": ({"masks": [{"name": "l", "type": "learned_diffusion", "learn": {"stepz": 3}}],
                            "reference": None}, "stepz"),
    "bad learn value": ({"masks": [{"name": "l", "type": "learned_diffusion", "learn": {"steps": "many"}}],
                         "reference": None}, "--steps: invalid int value 'many'"),
    "learn sets a study flag": ({"masks": [{"name": "l", "type": "learned_diffusion", "learn": {"acceleration": 3}}],
                                 "reference": None}, "the study sets it"),
    "missing learned mask file": ({"masks": [{"name": "l", "type": "learned_diffusion", "file": "nope_R{R}.safetensors"}],
                                   "reference": None}, "nope_R2.safetensors"),
    "method listed twice": ({"methods": ["bart-l1", {"name": "bart-l1", "lamda": 0.01}]}, "list each method once"),
    "bad accelerations": ({"accelerations": [4, "fast"]}, "accelerations"),
    "repeated acceleration": ({"accelerations": [4, 4]}, "distinct"),
    "acceleration <= 1": ({"accelerations": [1]}, "> 1"),
    "bad centre": ({"num_low_frequencies": "wide"}, "num_low_frequencies"),
    "unknown reference": ({"reference": "nothing"}, "reference"),
    "bad kind": ({"kind": "spiral"}, "kind"),
    "missing data": ({"data": "/nonexistent/fastmri"}, "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exits_2_with_one_line(study, case, tmp_path, capsys):
    overrides, needle = BAD[case]
    cfg = {k: v for k, v in {**_config(study[0] / "data"), **overrides}.items() if v is not None}
    config = _write_config(tmp_path / "bad.yaml", cfg)
    capsys.readouterr()
    assert _compare(config, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastmri-diffmask compare: error:"), err
    assert needle in err
    assert not (tmp_path / "out" / "cells").exists(), "nothing may run before the config is refused"


@pytest.mark.parametrize("text,needle", [(None, "does not exist"), ("data: [unclosed", "not valid YAML"),
                                         ("- just\n- a list\n", "mapping")])
def test_unreadable_config_exits_2(tmp_path, capsys, text, needle):
    config = tmp_path / "c.yaml"
    if text is not None:
        config.write_text(text)
    assert _compare(config, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


# -- shipped study configs -------------------------------------------------------------------------
SHIPPED = sorted((ROOT / "recon_configs").glob("*.yaml"))


def test_the_shipped_configs_are_all_there():
    names = {p.name for p in SHIPPED}
    assert {"demo.yaml", "study_128.yaml", "point_128.yaml", "fastmri_brain_t2_384.yaml",
            "fastmri_knee_pd_320.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_parses(path):
    cfg = load_config(path)
    assert cfg.masks and cfg.methods and cfg.reference in {m.name for m in cfg.masks}
    cells = all_cells(cfg)
    assert len({c.id for c in cells}) == len(cells)
    if cfg.kind == "point":
        from fastmri_diffmask.masks.baselines import POINT_MASK_TYPES

        assert {m.type for m in cfg.masks} - {"learned_diffusion"} <= set(POINT_MASK_TYPES)


def test_study_128_is_the_full_study():
    cfg = load_config(ROOT / "recon_configs" / "study_128.yaml")
    assert cfg.accelerations == [4.0, 8.0] and cfg.num_slices is None
    assert {m.name for m in cfg.methods} == {"dps", "bart-l1", "sigpy-l1", "zero-filled"}
    dps = next(m for m in cfg.methods if m.name == "dps")
    assert dps.options.get("steps") == 100
    learned = {m.name: m.learn for m in cfg.masks if m.type == "learned_diffusion"}
    assert sorted(json.dumps(v, sort_keys=True) for v in learned.values()) == \
        sorted(json.dumps(v) for v in ({}, {"relaxed": True}, {"nested": True}))
    baselines = {m.type: m.seeds for m in cfg.masks if m.type != "learned_diffusion"}
    assert baselines == {"equispaced_fraction": 1, "random": 5, "magic_fraction": 1, "vd_random": 5}


@pytest.mark.parametrize("opt,needle", [({"dc_weight": -1}, "a positive number"), ({"dc_weight": "x"}, "a positive number"),
                                        ({"steps": 0}, "a positive integer"), ({"steps": 2.5}, "a positive integer"),
                                        ({"churn": -1}, "a number >= 0"), ({"cg_iters": 0}, "a positive integer")])
def test_bad_method_option_values_are_one_line_errors(opt, needle):
    from fastmri_diffmask.compare.config import parse_config
    from fastmri_diffmask.errors import UserError

    raw = {"data": "d", "masks": [{"name": "e", "type": "equispaced_fraction"}], "methods": [{"name": "dds", **opt}]}
    with pytest.raises(UserError, match=f"must be {needle}"):
        parse_config(raw, base=".", where="cfg")
    if "cg_iters" not in opt:  # DPS takes the same options, and cg_iters is DDS's alone
        raw["methods"] = [{"name": "dps", **opt}]
        with pytest.raises(UserError, match=f"must be {needle}"):
            parse_config(raw, base=".", where="cfg")
    raw["methods"] = [{"name": "dps", "cg_iters": 5}]
    with pytest.raises(UserError, match="unknown option"):
        parse_config(raw, base=".", where="cfg")


def test_a_reused_learned_mask_learned_with_other_options_is_refused(tmp_path):
    """compare reuses ``out/masks/<name>_R<R>.safetensors``, but only when the options it was learned
    with (recorded in the file, defaults resolved) and its prior are what the config gives now."""
    import dataclasses

    from fastmri_diffmask.compare.engine import check_learned_masks
    from fastmri_diffmask.learn.options import LearnMaskOptions
    from fastmri_diffmask.masks.file import MaskFile, save_mask_file

    cfg_dict = _config(tmp_path / "data", masks=[{"name": "l", "type": "learned_diffusion", "learn": {}}],
                       methods=["zero-filled"], reference=None, accelerations=[4], num_low_frequencies={4: 6})
    cfg = load_config(_write_config(tmp_path / "s.yaml", cfg_dict))
    cells = all_cells(cfg)
    sha = "ab" * 32
    as_learned = LearnMaskOptions(seed=cfg.seed, num_low_frequencies=6).resolved("line", 4.0).record()

    def write(options, prior_sha=sha):
        m = np.zeros(N, bool)
        m[N // 2 - 3:N // 2 + 3] = True  # the centre of 6, plus 2 more lines: 8 = 32 / 4
        m[[3, 27]] = True
        meta = {"prior": {"sha256": prior_sha}, **({"options": options} if options is not None else {})}
        save_mask_file(tmp_path / "masks" / "l_R4.safetensors",
                       MaskFile(mask=m, probabilities=np.full(N, 0.25), logits=np.zeros(N), kind="line",
                                acceleration=4.0, num_low_frequencies=6, metadata=meta))

    (tmp_path / "masks").mkdir()
    write(as_learned)
    check_learned_masks(cfg, cells, tmp_path, sha)  # same options, same prior: reused
    write({k: v for k, v in as_learned.items() if k != "refine_split"})  # an option added since: its default
    check_learned_masks(cfg, cells, tmp_path, sha)
    write(None)  # written before options were recorded: taken as it is
    check_learned_masks(cfg, cells, tmp_path, sha)
    write({**as_learned, "refine_classical": "sense"})  # e.g. a default that changed since
    with pytest.raises(UserError, match=r"refine_classical = 'sense', the config now gives 'none'"):
        check_learned_masks(cfg, cells, tmp_path, sha)
    write(as_learned, prior_sha="cd" * 32)
    with pytest.raises(UserError, match="prior sha256"):
        check_learned_masks(cfg, cells, tmp_path, sha)
    write(as_learned)
    spec = dataclasses.replace(cfg.masks[0], learn={"refine_sweeps": 1})
    changed = dataclasses.replace(cfg, masks=[spec])
    with pytest.raises(UserError, match="refine_sweeps = 2, the config now gives 1"):
        check_learned_masks(changed, all_cells(changed), tmp_path, sha)
