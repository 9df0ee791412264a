"""export-sequence --format pulseq: a 2D GRE whose phase-encode table is the mask, and back."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.masks.file import save_mask_file
from fastmri_diffmask.sequence import read_sequence_template, readout_table

pp = pytest.importorskip("pypulseq")
from fastmri_diffmask.pulseq import pulseq_labels, read_pulseq  # noqa: E402

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from test_sequence import make_mask_file  # noqa: E402


def read_seq(path):
    seq = pp.Sequence()
    seq.read(str(path))
    return seq


@pytest.mark.parametrize("shape,nlf,accel", [((64,), 8, 4.0), ((96,), 12, 8.0)])
@pytest.mark.parametrize("order", ["center-out", "linear", "importance"])
def test_pulseq_round_trip(tmp_path, shape, nlf, accel, order):
    mf = make_mask_file(shape, nlf, accel, seed=1)
    path = save_mask_file(tmp_path / "m.mask", mf)
    out = tmp_path / "gre.seq"
    assert main(["export-sequence", str(path), "--format", "pulseq", "--out", str(out), "--order", order]) == 0
    back = read_sequence_template(out)
    assert back.mask.shape == shape and np.array_equal(back.mask, mf.mask)
    assert back.num_low_frequencies == nlf and back.acceleration == accel

    table = readout_table(mf.mask, nlf, order, mf.probabilities)
    labels = pulseq_labels(out)
    assert labels["LIN"].tolist() == table["ky"].tolist()  # the mask's lines, in the chosen order
    assert labels["REF"].astype(bool).tolist() == table["calibration"].tolist()
    assert labels["IMA"].astype(bool).tolist() == table["calibration"].tolist()
    assert int(labels["REF"].sum()) == nlf

    seq = read_seq(out)
    ok, errors = seq.check_timing()
    assert ok, errors[:3]
    # pypulseq's own k-space calculation: each readout sits at ky = (j - W/2) / FOV, and its
    # sample n_read // 2 at kx = 0 (ISMRMRD's centre sample), so the file encodes the mask's lines
    k_adc = seq.calculate_kspace()[0]
    n_read = 2 * shape[0]  # default readout: 2 W samples (2x oversampling)
    ky = k_adc[1].reshape(len(table), n_read)
    kx = k_adc[0].reshape(len(table), n_read)
    fov = 0.256
    assert np.allclose(ky, ky[:, :1], atol=1e-6)  # no y gradient during the readout
    assert np.allclose(ky[:, 0] * fov, table["ky"] - shape[0] // 2, atol=1e-3)
    dk = 1 / fov / 2  # sample step: half a pixel step (2x oversampling)
    assert np.allclose(kx[:, n_read // 2], 0, atol=1e-3 * dk)
    assert np.allclose(np.diff(kx, axis=1), dk, rtol=1e-4)


def test_pulseq_nested_acceleration_and_fov(tmp_path):
    mf = make_mask_file((64,), 8, 4.0, nested=True, metadata={"rows": 128})
    path = save_mask_file(tmp_path / "n.mask", mf)
    out = tmp_path / "r8.seq"
    assert main(["export-sequence", str(path), "--format", "pulseq", "--out", str(out),
                 "--acceleration", "8", "--fov-mm", "200"]) == 0
    back = read_pulseq(out)
    assert np.array_equal(back.mask, mf.mask_at(8.0)) and back.acceleration == 8.0
    seq = read_seq(out)
    assert np.allclose(seq.definitions["FOV"][:2], 0.2)
    k_adc = seq.calculate_kspace()[0]
    ky = k_adc[1].reshape(int(back.mask.sum()), 128)[:, 0]
    assert np.allclose(np.sort(ky * 0.2 + 32), np.flatnonzero(back.mask), atol=1e-3)


@pytest.mark.parametrize("case", ["point_mask", "suffix", "no_pypulseq"])
def test_pulseq_bad_input_exit_2_no_output(tmp_path, capsys, monkeypatch, case):
    mf = make_mask_file((16, 12) if case == "point_mask" else (64,), 4, 4.0)
    path = save_mask_file(tmp_path / "m.mask", mf)
    out = tmp_path / ("out.txt" if case == "suffix" else "out.seq")
    if case == "no_pypulseq":
        monkeypatch.setitem(sys.modules, "pypulseq", None)  # import fails
    capsys.readouterr()
    assert main(["export-sequence", str(path), "--format", "pulseq", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert {"point_mask": "line masks", "suffix": ".seq", "no_pypulseq": "pip install"}[case] in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_read_pulseq_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.seq"
    bad.write_text("[BLOCKS]\n 1 2 3\nnot pulseq\n")
    with pytest.raises(UserError):
        read_sequence_template(bad)
    with pytest.raises(UserError):
        read_pulseq(tmp_path / "missing.seq")
