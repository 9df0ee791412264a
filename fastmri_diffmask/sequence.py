"""Export a learned mask as a per-readout acquisition table / ISMRMRD sequence template.

There is no standard "sequence table" file in ISMRMRD [1]_: the order of the acquisitions with
their ``idx.kspace_encode_step_1/2`` counters and calibration flags *is* the table. This module
writes that table as an ISMRMRD ``.h5`` template, a CSV or a JSON file, or (line masks) a Pulseq
``.seq`` gradient-echo sequence with that phase-encode table (:mod:`fastmri_diffmask.pulseq`),
and reads them back.

Index convention (exactly as ISMRMRD's ``kspace_encode_step_1`` counts it)
    For a line mask of shape ``(W,)``: ``ky`` is the mask's column index in ``[0, W)``; the
    k-space centre (DC, fastMRI's centred FFT) is ``ky = W // 2`` and the header's
    ``encodingLimits/kspace_encoding_step_1`` is ``minimum 0, maximum W - 1, center W // 2``;
    ``kz = 0``. For a point mask ``(H, W)`` over ``(ky, kz)``: ``ky`` in ``[0, H)`` with centre
    ``H // 2`` and ``kz`` (``kspace_encode_step_2``) in ``[0, W)`` with centre ``W // 2``.
    ``ky_from_centre = ky - centre`` (signed) is given too. So the mask column ``j`` is acquired
    by the readout with ``kspace_encode_step_1 = j``; :func:`~fastmri_diffmask.io.ismrmrd_raw.
    read_ismrmrd` places it back at column ``j``.

Orders
    ``center-out``: by ``|ky_from_centre|``, then ``|kz_from_centre|`` (negative side first on
    ties); ``linear``: ascending ``(ky, kz)``; ``importance``: descending learned probability
    (ties centre-out), so the fully sampled centre comes first.

Calibration
    Readouts inside the fully sampled centre (``num_low_frequencies`` wide, fastMRI's centre
    convention ``centre_slices``) carry ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``; the header's
    ``parallelImaging/calibrationMode`` is ``embedded``.

References
----------
.. [1] Inati et al., "ISMRM Raw data format: A proposed standard for MRI raw datasets", Magn.
       Reson. Med. 77(1):411-421, 2017.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import ismrmrd_header as hdr
from .io import ismrmrd_raw as raw
from .masks.file import MaskFile, centre_slices, load_mask_file
from .pulseq import read_pulseq, write_pulseq
from .sequence_template import SequenceTemplate
from .utils import atomic_path

ORDERS = ("center-out", "linear", "importance")
FORMATS = ("ismrmrd", "csv", "json", "pulseq")
TABLE_FIELDS = ("order", "ky", "kz", "ky_from_centre", "kz_from_centre", "calibration")
TABLE_DTYPE = np.dtype([(name, np.int64) for name in TABLE_FIELDS[:-1]] + [("calibration", np.bool_)])
JSON_FORMAT = "fastmri-diffmask-sequence"


def readout_table(mask: np.ndarray, num_low_frequencies: int, order: str = "center-out",
                  probabilities: np.ndarray | None = None) -> np.ndarray:
    """One row per sampled readout, in acquisition order (see the module docstring).

    Parameters
    ----------
    mask : ndarray
        Binary ``(W,)`` line mask or ``(H, W)`` point mask over ``(ky, kz)``.
    num_low_frequencies : int
        Width of the fully sampled centre (flagged as calibration).
    order : {"center-out", "linear", "importance"}
    probabilities : ndarray, optional
        Sampling probabilities (same shape); needed by ``importance``.

    Returns
    -------
    ndarray
        Structured array with fields ``TABLE_FIELDS``.
    """
    if order not in ORDERS:
        raise UserError(f"order {order!r} is not one of {', '.join(ORDERS)}")
    mask = np.asarray(mask)
    if mask.ndim not in (1, 2) or mask.sum() == 0:
        raise UserError(f"mask must be a non-empty (W,) or (H, W) binary array, got shape {mask.shape}")
    grid = mask[:, None] if mask.ndim == 1 else mask
    ky, kz = np.nonzero(grid > 0)
    dky = ky - grid.shape[0] // 2
    dkz = kz - grid.shape[1] // 2 if mask.ndim == 2 else np.zeros_like(kz)
    if order == "linear":
        perm = np.lexsort((kz, ky))
    elif order == "center-out":
        perm = np.lexsort((dkz, dky, np.abs(dkz), np.abs(dky)))
    else:
        if probabilities is None:
            raise UserError("importance order needs the mask file's probabilities; use center-out or linear")
        p = np.asarray(probabilities, np.float64).reshape(grid.shape)[ky, kz]
        perm = np.lexsort((dkz, dky, np.abs(dkz), np.abs(dky), -p))
    centre = np.zeros(grid.shape, bool)
    if num_low_frequencies:
        sl = centre_slices(mask.shape, num_low_frequencies)
        centre[sl if mask.ndim == 2 else (sl[0], slice(None))] = True
    table = np.zeros(ky.size, TABLE_DTYPE)
    table["order"] = np.arange(ky.size)
    table["ky"], table["kz"] = ky[perm], (kz[perm] if mask.ndim == 2 else 0)
    table["ky_from_centre"], table["kz_from_centre"] = dky[perm], dkz[perm]
    table["calibration"] = centre[ky[perm], kz[perm]]
    return table


def acceleration_factors(acceleration: float, kind: str) -> tuple[int, int]:
    """Integer ``parallelImaging/accelerationFactor`` (step 1, step 2) closest to ``acceleration``.

    ISMRMRD stores integers; the exact value goes into the userParameterDouble
    ``acceleration``. Point masks split R into the most square pair with the closest product.
    """
    if kind == "line":
        return max(1, int(round(acceleration))), 1
    best = min(((a1, a2) for a1 in range(1, int(np.ceil(acceleration)) + 2) for a2 in range(1, a1 + 1)),
               key=lambda a: (abs(a[0] * a[1] - acceleration), a[0] - a[1]))
    return best


def _header_xml(shape: tuple[int, ...], readout: int, oversampling: int, acceleration: float,
                achieved: float, num_low_frequencies: int, order: str) -> str:
    from ismrmrd import xsd

    point = len(shape) == 2
    ny, nz = (shape[0], shape[1]) if point else (shape[0], 1)
    rx = max(1, readout // oversampling)

    def space(x):  # 1 mm pixels as placeholders: a template carries no geometry
        return xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=x, y=ny, z=nz),
                                     fieldOfView_mm=xsd.fieldOfViewMm(x=float(rx), y=float(ny), z=float(nz)))

    def limit(n):
        return xsd.limitType(minimum=0, maximum=n - 1, center=n // 2)

    a1, a2 = acceleration_factors(acceleration, "point" if point else "line")
    encoding = xsd.encodingType(
        encodedSpace=space(readout), reconSpace=space(rx),
        encodingLimits=xsd.encodingLimitsType(kspace_encoding_step_1=limit(ny),
                                              kspace_encoding_step_2=limit(nz) if point else None),
        trajectory=xsd.trajectoryType.CARTESIAN,
        parallelImaging=xsd.parallelImagingType(
            accelerationFactor=xsd.accelerationFactorType(kspace_encoding_step_1=a1, kspace_encoding_step_2=a2),
            calibrationMode=xsd.calibrationModeType.EMBEDDED),
    )
    user = xsd.userParametersType(
        userParameterDouble=[xsd.userParameterDoubleType(name="acceleration", value=float(acceleration)),
                             xsd.userParameterDoubleType(name="achieved_acceleration", value=float(achieved))],
        userParameterLong=[xsd.userParameterLongType(name="num_low_frequencies", value=int(num_low_frequencies))],
        userParameterString=[xsd.userParameterStringType(name="order", value=order),
                             xsd.userParameterStringType(name="generator", value="fastmri-diffmask export-sequence")],
    )
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63_500_000),
        encoding=[encoding], userParameters=user,
    )
    return xsd.ToXML(header)


def _acquisition_records(table: np.ndarray, readout: int) -> np.ndarray:
    """ISMRMRD acquisition records (no samples: ``active_channels = 0``), one per table row."""
    from ismrmrd.hdf5 import acquisition_dtype

    n = len(table)
    rec = np.zeros(n, acquisition_dtype)
    head = rec["head"]
    head["version"] = 1
    head["scan_counter"] = table["order"]
    head["number_of_samples"] = readout
    head["center_sample"] = readout // 2
    head["idx"]["kspace_encode_step_1"] = table["ky"]
    head["idx"]["kspace_encode_step_2"] = table["kz"]
    flags = np.where(table["calibration"], hdr.flag_bit(hdr.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING), 0)
    flags = flags.astype(np.uint64)
    flags[0] |= np.uint64(hdr.flag_bit(hdr.ACQ_FIRST_IN_SLICE))
    flags[-1] |= np.uint64(hdr.flag_bit(hdr.ACQ_LAST_IN_SLICE) | hdr.flag_bit(hdr.ACQ_LAST_IN_MEASUREMENT))
    head["flags"] = flags
    empty = np.zeros(0, np.float32)
    for i in range(n):
        rec["data"][i] = empty
        rec["traj"][i] = empty
    return rec


def write_ismrmrd_template(path: str | Path, table: np.ndarray, shape: tuple[int, ...],
                           num_low_frequencies: int, acceleration: float, readout: int,
                           readout_oversampling: int = 2, order: str = "center-out") -> Path:
    """Write an ISMRMRD ``.h5`` template: the header (see the module docstring) and one
    acquisition per table row, in order, without samples (``active_channels = 0``,
    ``number_of_samples = readout``). Atomic."""
    import h5py
    from ismrmrd import Dataset

    achieved = float(np.prod(shape)) / len(table)
    xml = _header_xml(tuple(shape), int(readout), int(readout_oversampling), acceleration, achieved,
                      num_low_frequencies, order)
    records = _acquisition_records(table, int(readout))
    path = Path(path)
    with atomic_path(path) as tmp:
        with Dataset(str(tmp), "dataset", mode="w") as ds:
            ds.write_xml_header(xml.encode("utf-8"))
        with h5py.File(tmp, "a") as f:  # one bulk write (appending readouts one by one is slow)
            f["dataset"].create_dataset("data", data=records, maxshape=(None,))
    return path


def write_table_csv(path: str | Path, table: np.ndarray) -> Path:
    """The table as CSV with a header row ``TABLE_FIELDS``; calibration as 0/1. Atomic."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TABLE_FIELDS)
        for row in table:
            w.writerow([int(row[k]) for k in TABLE_FIELDS])
    return path


def write_table_json(path: str | Path, table: np.ndarray, meta: dict) -> Path:
    """The table as JSON: ``meta`` plus ``readouts`` (a list of row objects). Atomic."""
    doc = {"format": JSON_FORMAT, "version": 1, **meta,
           "convention": "ky = kspace_encode_step_1 in [0, H) with the k-space centre at H // 2 "
                         "(encodingLimits center); kz likewise for point masks, else 0",
           "readouts": [{k: (bool(r[k]) if k == "calibration" else int(r[k])) for k in TABLE_FIELDS}
                        for r in table]}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    return path


def export_sequence(mask_file: str | Path | MaskFile, out: str | Path, *, format: str = "ismrmrd",
                    order: str = "center-out", acceleration: float | None = None,
                    readout: int | None = None, readout_oversampling: int = 2,
                    fov_mm: float = 256.0) -> np.ndarray:
    """Export a mask file as a sequence table / template; returns the table.

    ``acceleration`` picks a nested mask (``MaskFile.mask_at``); ``readout`` (samples per
    readout, encodedSpace x) defaults to the mask file's metadata ``rows`` when present, else
    ``2 * ny`` (ny = ky size); reconSpace x = ``readout // readout_oversampling``. ``fov_mm``
    is the Pulseq sequence's square field of view (other formats carry no geometry).
    """
    if format not in FORMATS:
        raise UserError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    mf = mask_file if isinstance(mask_file, MaskFile) else load_mask_file(mask_file)
    r = mf.acceleration if acceleration is None else float(acceleration)
    if not r > 1:
        raise UserError(f"acceleration must be > 1, got {r:g}")
    mask = mf.mask_at(r)
    table = readout_table(mask, mf.num_low_frequencies, order, mf.probabilities)
    if readout is None:
        rows = mf.metadata.get("rows")
        readout = int(rows) if isinstance(rows, (int, float)) and rows > 0 else 2 * mask.shape[0]
    if int(readout) < 1 or int(readout) > 65535 or int(readout_oversampling) < 1:
        raise UserError(f"--readout must be in [1, 65535] and the oversampling >= 1, got {readout}, "
                        f"{readout_oversampling}")
    if format == "pulseq":
        write_pulseq(out, table, mask.shape, mf.num_low_frequencies, r, int(readout),
                     int(readout_oversampling), order, fov_mm=float(fov_mm))
    elif format == "ismrmrd":
        write_ismrmrd_template(out, table, mask.shape, mf.num_low_frequencies, r, int(readout),
                               int(readout_oversampling), order)
    elif format == "csv":
        write_table_csv(out, table)
    else:
        meta = {"kind": mf.kind, "shape": list(mask.shape), "acceleration": r,
                "achieved_acceleration": mask.size / float(mask.sum()),
                "num_low_frequencies": int(mf.num_low_frequencies), "order": order,
                "readout": int(readout)}
        write_table_json(out, table, meta)
    return table


def _user_parameters(header_xml: str) -> dict:
    root = ET.fromstring(header_xml)
    out = {}
    for kind, cast in (("userParameterDouble", float), ("userParameterLong", int), ("userParameterString", str)):
        for el in root.iter(f"{{{hdr.NS}}}{kind}"):
            name, value = el.find(f"{{{hdr.NS}}}name"), el.find(f"{{{hdr.NS}}}value")
            if name is not None and value is not None and value.text is not None:
                try:
                    out[name.text] = cast(value.text)
                except ValueError:
                    pass
    return out


def _read_json_template(path: Path) -> SequenceTemplate:
    try:
        doc = json.loads(path.read_text())
        assert doc["format"] == JSON_FORMAT
        mask = np.zeros(doc["shape"], np.float32)
        for r in doc["readouts"]:
            mask[(r["ky"], r["kz"]) if mask.ndim == 2 else r["ky"]] = 1
        return SequenceTemplate(mask, int(doc["num_low_frequencies"]), float(doc["acceleration"]))
    except (ValueError, KeyError, TypeError, IndexError, AssertionError):
        raise UserError(f"{path} is not a fastmri-diffmask sequence JSON; re-export it") from None


def read_sequence_template(path: str | Path) -> SequenceTemplate:
    """Read the sampling pattern back from an ISMRMRD template (or a JSON table, or a Pulseq
    ``.seq`` file: :func:`fastmri_diffmask.pulseq.read_pulseq`).

    The mask comes from the acquisitions' ``kspace_encode_step_1/2`` (placed as
    :func:`~fastmri_diffmask.io.ismrmrd_raw.read_ismrmrd` does), ``num_low_frequencies`` from
    the userParameterLong of that name or else the calibration flags, ``acceleration`` from the
    userParameterDouble ``acceleration``, else the header's accelerationFactor product, else the
    achieved one.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _read_json_template(path)
    if path.suffix.lower() == ".seq":
        return read_pulseq(path)
    xml, records = raw.read_raw_records(path)
    enc = hdr.parse_header(xml, str(path))
    if enc.trajectory.lower() != "cartesian":
        raise UserError(f"{path}: trajectory {enc.trajectory!r} is not Cartesian; not a mask template")
    head = records["head"]
    head = head[~hdr.has_flag(head["flags"], hdr.ACQ_IS_NOISE_MEASUREMENT)]
    flags = head["flags"]
    _, ny, nz = enc.encoded_matrix
    point = nz > 1
    ky = head["idx"]["kspace_encode_step_1"].astype(np.int64) - enc.step_1[2] + ny // 2
    kz = (head["idx"]["kspace_encode_step_2"].astype(np.int64) - enc.step_2[2] + nz // 2
          if point else np.zeros_like(ky))
    if ky.size == 0 or ky.min() < 0 or ky.max() >= ny or kz.min() < 0 or kz.max() >= nz:
        raise UserError(f"{path}: encode indices fall outside the encoded matrix; not a valid template")
    mask = np.zeros((ny, nz), np.float32)
    mask[ky, kz] = 1
    mask = mask if point else mask[:, 0]
    user = _user_parameters(xml)
    calib = hdr.has_flag(flags, hdr.ACQ_IS_PARALLEL_CALIBRATION, hdr.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    nlf = int(user.get("num_low_frequencies", raw.calibration_width(mask, ky[calib], kz[calib])))
    if "acceleration" in user:
        r = float(user["acceleration"])
    elif enc.acceleration_factor:
        r = float(np.prod(enc.acceleration_factor))
    else:
        r = mask.size / float(mask.sum())
    return SequenceTemplate(mask, nlf, r)
