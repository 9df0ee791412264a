"""export-sequence: mask file -> per-readout table / ISMRMRD template -> the same mask."""

from __future__ import annotations

import csv
import json

import h5py
import ismrmrd
import numpy as np
import pytest

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.io.ismrmrd_raw import read_ismrmrd
from fastmri_diffmask.masks.file import MaskFile, centre_slices, save_mask_file
from fastmri_diffmask.sequence import (TABLE_FIELDS, export_sequence, read_sequence_template,
                                       readout_table)


def make_mask_file(shape, nlf, acceleration, seed=0, nested=False, metadata=None):
    """A MaskFile with a fully sampled centre and exactly round(N/R) samples."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    centre = np.zeros(shape, bool)
    centre[centre_slices(shape, nlf)] = True
    prob = rng.uniform(0.05, 0.95, shape).astype(np.float32)
    prob[centre] = 1
    flat_order = np.argsort(-prob.reshape(-1), kind="stable")  # centre first, then by probability
    budget = int(round(n / acceleration))
    mask = np.zeros(n, np.float32)
    mask[flat_order[:budget]] = 1
    return MaskFile(mask=mask.reshape(shape), probabilities=prob, logits=np.log(prob / (1 - prob + 1e-6)),
                    kind="line" if len(shape) == 1 else "point", acceleration=acceleration,
                    num_low_frequencies=nlf, order=flat_order if nested else None,
                    metadata=dict(metadata or {}))


@pytest.fixture
def line_file(tmp_path):
    mf = make_mask_file((64,), 8, 4.0)
    return save_mask_file(tmp_path / "line.mask", mf), mf


@pytest.mark.parametrize("shape,nlf,accel", [((64,), 8, 4.0), ((128,), 16, 8.0), ((32, 24), 8, 6.0)])
@pytest.mark.parametrize("order", ["center-out", "linear", "importance"])
def test_ismrmrd_round_trip(tmp_path, shape, nlf, accel, order):
    mf = make_mask_file(shape, nlf, accel)
    path = save_mask_file(tmp_path / "m.mask", mf)
    out = tmp_path / "seq.h5"
    assert main(["export-sequence", str(path), "--format", "ismrmrd", "--out", str(out), "--order", order]) == 0
    back = read_sequence_template(out)
    assert back.mask.shape == mf.mask.shape and np.array_equal(back.mask, mf.mask)
    assert back.num_low_frequencies == nlf and back.acceleration == accel

    # the acquisitions, read with the ismrmrd package, are the table in order
    table = readout_table(mf.mask, nlf, order, mf.probabilities)
    with ismrmrd.Dataset(str(out), "dataset", mode="r") as ds:
        header = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    assert [a.idx.kspace_encode_step_1 for a in acqs] == table["ky"].tolist()
    assert [a.idx.kspace_encode_step_2 for a in acqs] == table["kz"].tolist()
    calib = [a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING) for a in acqs]
    assert calib == table["calibration"].tolist() and sum(calib) == nlf ** len(shape)
    assert acqs[0].is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE) and acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    enc = header.encoding[0]
    assert enc.trajectory == ismrmrd.xsd.trajectoryType.CARTESIAN
    lim = enc.encodingLimits.kspace_encoding_step_1
    assert (lim.minimum, lim.maximum, lim.center) == (0, shape[0] - 1, shape[0] // 2)
    if len(shape) == 2:
        lim2 = enc.encodingLimits.kspace_encoding_step_2
        assert (lim2.minimum, lim2.maximum, lim2.center) == (0, shape[1] - 1, shape[1] // 2)
        assert enc.encodedSpace.matrixSize.z == shape[1]
    af = enc.parallelImaging.accelerationFactor
    assert af.kspace_encoding_step_1 * af.kspace_encoding_step_2 == round(accel)
    assert enc.parallelImaging.calibrationMode == ismrmrd.xsd.calibrationModeType.EMBEDDED
    assert enc.encodedSpace.matrixSize.x == 2 * shape[0] and enc.reconSpace.matrixSize.x == shape[0]


def test_orders(line_file):
    _, mf = line_file
    t = readout_table(mf.mask, 8, "center-out")
    assert np.all(np.diff(np.abs(t["ky_from_centre"])) >= 0) and t["ky"][0] == 32
    assert np.all(t["ky_from_centre"] == t["ky"] - 32)
    assert np.all(np.diff(readout_table(mf.mask, 8, "linear")["ky"]) > 0)
    t = readout_table(mf.mask, 8, "importance", mf.probabilities)
    assert np.all(np.diff(mf.probabilities[t["ky"]]) <= 0) and t["calibration"][:8].all()
    point = readout_table(np.ones((4, 6)), 2, "center-out")
    key = np.abs(point["ky_from_centre"]) * 10 + np.abs(point["kz_from_centre"])
    assert np.all(np.diff(key) >= 0)
    with pytest.raises(UserError):
        readout_table(mf.mask, 8, "importance")  # no probabilities
    with pytest.raises(UserError):
        readout_table(mf.mask, 8, "spiral")


@pytest.mark.parametrize("order", ["center-out", "importance"])
def test_csv_and_json(tmp_path, line_file, order):
    path, mf = line_file
    table = readout_table(mf.mask, 8, order, mf.probabilities)
    csv_out, json_out = tmp_path / "seq.csv", tmp_path / "seq.json"
    assert main(["export-sequence", str(path), "--format", "csv", "--out", str(csv_out), "--order", order]) == 0
    assert main(["export-sequence", str(path), "--format", "json", "--out", str(json_out), "--order", order]) == 0
    with open(csv_out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(TABLE_FIELDS) and len(rows) == mf.num_sampled
    assert [int(r["ky"]) for r in rows] == table["ky"].tolist()
    assert [int(r["order"]) for r in rows] == list(range(len(rows)))
    assert [r["calibration"] == "1" for r in rows] == table["calibration"].tolist()
    doc = json.loads(json_out.read_text())
    assert len(doc["readouts"]) == mf.num_sampled
    assert [r["ky"] for r in doc["readouts"]] == table["ky"].tolist()
    assert doc["num_low_frequencies"] == 8 and doc["acceleration"] == 4.0
    back = read_sequence_template(json_out)
    assert np.array_equal(back.mask, mf.mask) and back.num_low_frequencies == 8


def test_nested_acceleration_and_readout(tmp_path):
    mf = make_mask_file((64,), 8, 4.0, nested=True, metadata={"rows": 100})
    path = save_mask_file(tmp_path / "nested.mask", mf)
    out = tmp_path / "r8.h5"
    assert main(["export-sequence", str(path), "--out", str(out), "--acceleration", "8"]) == 0
    back = read_sequence_template(out)
    assert np.array_equal(back.mask, mf.mask_at(8.0)) and back.acceleration == 8.0
    assert back.num_low_frequencies == 8 and back.mask.sum() == 8
    with h5py.File(out, "r") as f:
        assert set(f["dataset/data"][()]["head"]["number_of_samples"]) == {100}  # metadata rows
    export_sequence(path, out, readout=256)
    with h5py.File(out, "r") as f:
        assert set(f["dataset/data"][()]["head"]["number_of_samples"]) == {256}


def test_template_reads_as_raw_data(tmp_path, line_file):
    path, mf = line_file
    out = tmp_path / "t.h5"
    export_sequence(path, out)
    raw = read_ismrmrd(out)
    assert np.array_equal(raw.mask, mf.mask) and raw.num_low_frequencies == 8
    assert raw.acceleration == 4.0


@pytest.mark.parametrize("case", ["missing", "corrupt", "not_nested", "bad_readout"])
def test_bad_input_exit_2_no_output(tmp_path, line_file, capsys, case):
    path, _ = line_file
    args = ["--out", str(tmp_path / "out.h5")]
    if case == "missing":
        path = tmp_path / "nope.mask"
    elif case == "corrupt":
        path.write_bytes(b"\x00garbage" * 10)
    elif case == "not_nested":
        args += ["--acceleration", "8"]
    else:
        args += ["--readout", "0"]
    capsys.readouterr()
    assert main(["export-sequence", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert not (tmp_path / "out.h5").exists()
    assert not list(tmp_path.glob(".out.h5*"))


def test_read_template_rejects_non_ismrmrd(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["a"] = np.zeros(3)
    with pytest.raises(UserError):
        read_sequence_template(p)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserError):
        read_sequence_template(tmp_path / "x.json")
