"""The ISMRMRD header and acquisition flags: what the raw-data reader needs from them.

:func:`parse_header` reads the first ``<encoding>`` of the XML header [1]_ (matrix sizes,
encoding limits, parallel-imaging factors) into :class:`EncodingInfo`; :func:`flag_bit` and
:func:`has_flag` test the 64-bit acquisition flags (1-based bit positions, as ISMRMRD numbers
them).

References
----------
.. [1] Inati et al., "ISMRM Raw data format: A proposed standard for MRI raw datasets", Magn.
       Reson. Med. 77(1):411-421, 2017. https://ismrmrd.github.io
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import NamedTuple

import numpy as np

from ..errors import UserError

NS = "http://www.ismrm.org/ISMRMRD"

# ISMRMRD acquisition flag numbers (1-based bit positions, ismrmrd/constants.py).
ACQ_FIRST_IN_SLICE = 7
ACQ_LAST_IN_SLICE = 8
ACQ_IS_NOISE_MEASUREMENT = 19
ACQ_IS_PARALLEL_CALIBRATION = 20
ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING = 21
ACQ_IS_REVERSE = 22
ACQ_LAST_IN_MEASUREMENT = 25
#: Readouts that carry no imaging k-space: navigation, phase correction, dummy scan, RT/HP
#: feedback, surface-coil correction, phase stabilisation (reference).
SKIP_FLAGS = (23, 24, 27, 28, 29, 30, 31, 32)


def flag_bit(flag: int) -> int:
    """The bitmask of an ISMRMRD acquisition flag number (flags are 1-based bit positions)."""
    return 1 << (flag - 1)


def has_flag(flags: np.ndarray, *flag_numbers: int) -> np.ndarray:
    """Boolean array: which ``flags`` (uint64 acquisition flags) have any of ``flag_numbers``."""
    bits = 0
    for f in flag_numbers:
        bits |= flag_bit(f)
    return (np.asarray(flags, np.uint64) & np.uint64(bits)) != 0


class EncodingInfo(NamedTuple):
    """What the reader needs from the first ``<encoding>`` of an ISMRMRD header."""

    encoded_matrix: tuple[int, int, int]
    recon_matrix: tuple[int, int, int]
    trajectory: str
    step_1: tuple[int, int, int]  # (minimum, maximum, center)
    step_2: tuple[int, int, int] | None
    acceleration_factor: tuple[int, int] | None  # parallelImaging (step 1, step 2)
    calibration_mode: str | None
    protocol_name: str | None


def _find(root: ET.Element, *path: str) -> ET.Element | None:
    return root.find("./" + "/".join(f"{{{NS}}}{p}" for p in path))


def _int(root: ET.Element, *path: str) -> int | None:
    el = _find(root, *path)
    if el is None or el.text is None:
        return None
    try:
        return int(float(el.text))
    except ValueError:
        return None


def parse_header(header_xml: str | bytes, where: str = "header") -> EncodingInfo:
    """Read the first encoding of an ISMRMRD header; one-line :class:`UserError` if unusable."""
    try:
        root = ET.fromstring(header_xml)
    except ET.ParseError as e:
        raise UserError(f"{where}: the ISMRMRD header is not valid XML ({e}); the file is corrupt") from None
    enc = _find(root, "encoding")
    if enc is None:
        raise UserError(f"{where}: the ISMRMRD header has no <encoding>; the file is not usable raw data")
    mats = []
    for space in ("encodedSpace", "reconSpace"):
        m = tuple(_int(enc, space, "matrixSize", a) for a in "xyz")
        if None in m[:2]:
            raise UserError(f"{where}: the ISMRMRD header lacks {space}/matrixSize; fix the header")
        mats.append((m[0], m[1], m[2] or 1))
    traj_el = _find(enc, "trajectory")
    trajectory = (traj_el.text or "").strip() if traj_el is not None else ""
    step_1 = tuple(_int(enc, "encodingLimits", "kspace_encoding_step_1", k) for k in ("minimum", "maximum", "center"))
    if None in step_1:
        raise UserError(f"{where}: the ISMRMRD header lacks encodingLimits/kspace_encoding_step_1 "
                        "(minimum, maximum, center); add them to the header")
    step_2 = tuple(_int(enc, "encodingLimits", "kspace_encoding_step_2", k) for k in ("minimum", "maximum", "center"))
    if None in step_2:
        if mats[0][2] > 1:
            raise UserError(f"{where}: a 3D encoding (matrixSize z={mats[0][2]}) needs encodingLimits/"
                            "kspace_encoding_step_2 (minimum, maximum, center); add them to the header")
        step_2 = None
    accel = None
    a1 = _int(enc, "parallelImaging", "accelerationFactor", "kspace_encoding_step_1")
    if a1 is not None:
        accel = (a1, _int(enc, "parallelImaging", "accelerationFactor", "kspace_encoding_step_2") or 1)
    mode = _find(enc, "parallelImaging", "calibrationMode")
    proto = _find(root, "measurementInformation", "protocolName")
    return EncodingInfo(
        encoded_matrix=mats[0], recon_matrix=mats[1], trajectory=trajectory, step_1=step_1,
        step_2=step_2, acceleration_factor=accel,
        calibration_mode=mode.text.strip() if mode is not None and mode.text else None,
        protocol_name=proto.text.strip() if proto is not None and proto.text else None,
    )
