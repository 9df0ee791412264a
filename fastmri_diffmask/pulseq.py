"""Export a learned line mask as a Pulseq 2D Cartesian gradient-echo sequence, and read it back.

The sequence is an RF-spoiled 2D gradient echo (FLASH [3]_) written with pypulseq [1]_ in the
open Pulseq format [2]_: per readout a slice-selective sinc pulse, a readout pre-phaser with the
phase encode and the slice rephaser, the readout with its ADC, then a phase-encode rewinder with
readout and slice spoilers. The **phase-encode table is the learned mask** in the order of
:func:`fastmri_diffmask.sequence.readout_table` (``center-out``, ``linear`` or ``importance``),
one readout per sampled line, nothing else (no dummy scans, no fully sampled prescan).

Index convention (the same as the ISMRMRD template, :mod:`fastmri_diffmask.sequence`)
    Mask column ``j`` in ``[0, W)`` is the line with phase-encode area
    ``(j - W // 2) / FOV`` (k-space centre, DC, at ``W // 2``); its ADC carries the label
    ``LIN = j`` (``make_label("LIN", "SET", j)``), so a Pulseq-to-ISMRMRD conversion puts it at
    ``kspace_encode_step_1 = j``. Along the readout, ADC sample ``readout // 2`` is at
    ``kx = 0`` (``center_sample`` in ISMRMRD terms), samples step by
    ``1 / (FOV * readout_oversampling)``.

Calibration
    Lines inside the fully sampled centre (``num_low_frequencies`` wide, ``centre_slices``) carry
    the Pulseq flags ``REF = True`` (parallel-imaging reference / ACS data) and ``IMA = True``
    (also imaging data), the Pulseq spelling of ISMRMRD's
    ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``; every other line has both flags ``False``.

Definitions
    Besides ``FOV``, ``Name`` and the raster times, the ``[DEFINITIONS]`` section holds
    ``FastmriDiffmaskLines`` (``W``), ``FastmriDiffmaskNumLowFrequencies``,
    ``FastmriDiffmaskAcceleration`` and ``FastmriDiffmaskOrder``, so the mask file's metadata
    round-trips. :func:`read_pulseq` takes the lines from the ``LIN`` labels and checks them
    against the phase-encode gradient areas (the areas alone are used when a file has no labels).

Only line masks (2D) are written; point masks (3D ky-kz) are refused with a :class:`UserError`.

References
----------
.. [1] Ravi KS, Geethanath S, Vaughan JT. PyPulseq: a Python package for MRI pulse sequence
       design. J. Open Source Softw. 4(42):1725, 2019. https://github.com/imr-framework/pypulseq
.. [2] Layton KJ, Kroboth S, Jia F, et al. Pulseq: a rapid and hardware-independent pulse
       sequence prototyping framework. Magn. Reson. Med. 77(4):1544-1552, 2017.
       https://pulseq.github.io/specification.pdf
.. [3] Haase A, Frahm J, Matthaei D, Haenicke W, Merboldt KD. FLASH imaging: rapid NMR imaging
       using low flip-angle pulses. J. Magn. Reson. 67(2):258-266, 1986.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .errors import UserError
from .sequence_template import SequenceTemplate
from .utils import atomic_path

SEQUENCE_NAME = "fastmri_diffmask_gre"
_DEF = "FastmriDiffmask"
#: Readout dwell per reconstructed pixel (s): 10 us, i.e. 1/(Nx * 10 us) Hz per pixel.
PIXEL_DWELL = 10e-6
#: RF spoiling phase increment (degrees), the usual FLASH choice.
RF_SPOIL_INC = 117.0


def _pypulseq():
    try:
        import pypulseq
    except ImportError:
        raise UserError("the pulseq format needs pypulseq; install it with: "
                        "pip install 'fastmri-diffmask[pulseq]'") from None
    return pypulseq


def _system(pp):
    """A conservative clinical gradient system (28 mT/m, 150 T/m/s) with typical dead times."""
    return pp.Opts(max_grad=28, grad_unit="mT/m", max_slew=150, slew_unit="T/m/s",
                   rf_ringdown_time=20e-6, rf_dead_time=100e-6, adc_dead_time=10e-6)


def build_gre(table: np.ndarray, num_lines: int, num_low_frequencies: int, acceleration: float,
              order: str, readout: int, readout_oversampling: int = 2, fov_mm: float = 256.0,
              slice_thickness_mm: float = 5.0, flip_angle_deg: float = 15.0):
    """A pypulseq ``Sequence`` acquiring the rows of ``table`` (a line-mask readout table).

    Parameters
    ----------
    table : ndarray
        :func:`~fastmri_diffmask.sequence.readout_table` of a ``(W,)`` line mask, in order.
    num_lines : int
        ``W``, the mask length (phase-encode matrix).
    num_low_frequencies, acceleration, order
        Stored as definitions (see the module docstring).
    readout : int
        ADC samples per readout; the readout gradient covers ``readout // readout_oversampling``
        pixels of ``fov_mm`` (ADC dwell ``PIXEL_DWELL / readout_oversampling``).
    fov_mm, slice_thickness_mm, flip_angle_deg : float
        Square in-plane field of view, slice thickness, excitation flip angle.

    Returns
    -------
    pypulseq.Sequence
        Minimum TE and TR for this gradient system; ``check_timing()`` passes.
    """
    pp = _pypulseq()
    if not (fov_mm > 0 and slice_thickness_mm > 0 and 0 < flip_angle_deg <= 90):
        raise UserError(f"need FOV > 0, slice thickness > 0 and a flip angle in (0, 90] degrees, got "
                        f"{fov_mm:g} mm, {slice_thickness_mm:g} mm, {flip_angle_deg:g} deg")
    nx = readout // readout_oversampling
    if nx < 2:
        raise UserError(f"--readout {readout} with oversampling {readout_oversampling} leaves {nx} pixels; "
                        "need at least 2")
    system = _system(pp)
    fov, thick = fov_mm * 1e-3, slice_thickness_mm * 1e-3
    seq = pp.Sequence(system)
    rf, gz, gz_reph = pp.make_sinc_pulse(
        flip_angle=math.radians(flip_angle_deg), duration=2e-3, slice_thickness=thick, apodization=0.5,
        time_bw_product=4, system=system, return_gz=True, use="excitation", delay=system.rf_dead_time)
    dk = 1.0 / fov
    flat = nx * PIXEL_DWELL
    gx = pp.make_trapezoid("x", flat_area=nx * dk, flat_time=flat, system=system)
    adc = pp.make_adc(num_samples=readout, duration=flat, delay=gx.rise_time, system=system)
    pre = 1e-3
    # ADC samples sit at dwell * (i + 1/2) on the flat top; the extra half sample step puts
    # sample ``readout // 2`` exactly at kx = 0 (ISMRMRD's centre_sample, fastMRI's centred FFT)
    gx_pre = pp.make_trapezoid("x", area=-gx.area / 2 - gx.flat_area / readout / 2, duration=pre,
                               system=system)
    gx_spoil = pp.make_trapezoid("x", area=2 * nx * dk, system=system)
    gz_spoil = pp.make_trapezoid("z", area=4 / thick, system=system)
    spoil = max(pp.calc_duration(gx_spoil), pp.calc_duration(gz_spoil), pre)
    for name, value in (("FOV", [fov, fov, thick]), ("Name", SEQUENCE_NAME),
                        (f"{_DEF}Lines", int(num_lines)),
                        (f"{_DEF}NumLowFrequencies", int(num_low_frequencies)),
                        (f"{_DEF}Acceleration", float(acceleration)), (f"{_DEF}Order", order),
                        ("ReadoutOversamplingFactor", int(readout_oversampling))):
        seq.set_definition(name, value)
    centre = num_lines // 2
    for i, row in enumerate(table):
        ky = int(row["ky"])
        phase = math.radians((RF_SPOIL_INC * 0.5 * (i * i + i + 2)) % 360.0)
        rf.phase_offset = adc.phase_offset = phase
        area = (ky - centre) * dk
        gy_pre = pp.make_trapezoid("y", area=area, duration=pre, system=system)
        gy_rew = pp.make_trapezoid("y", area=-area, duration=pre, system=system)
        calib = bool(row["calibration"])
        seq.add_block(rf, gz)
        seq.add_block(gx_pre, gy_pre, gz_reph, pp.make_label("LIN", "SET", ky),
                      pp.make_label("REF", "SET", calib), pp.make_label("IMA", "SET", calib))
        seq.add_block(gx, adc)
        seq.add_block(pp.make_delay(spoil), gx_spoil, gy_rew, gz_spoil)
    ok, report = seq.check_timing()
    if not ok:
        raise UserError(f"the Pulseq sequence fails pypulseq's timing check ({len(report)} errors, first: "
                        f"{str(report[0]).strip().splitlines()[0] if report else '?'}); change --readout or FOV")
    return seq


def write_pulseq(path: str | Path, table: np.ndarray, shape: tuple[int, ...], num_low_frequencies: int,
                 acceleration: float, readout: int, readout_oversampling: int = 2, order: str = "center-out",
                 fov_mm: float = 256.0) -> Path:
    """Build (:func:`build_gre`) and write the ``.seq`` file atomically (temp file, then rename).

    Raises :class:`UserError` for point masks, a path not ending in ``.seq`` or a failed timing
    check; nothing is written then.
    """
    path = Path(path)
    if len(shape) != 1:
        raise UserError(f"the pulseq format writes 2D line masks only; this is a {shape} point mask, "
                        "export it as ismrmrd, csv or json")
    if path.suffix != ".seq":
        raise UserError(f"a Pulseq file must end in .seq (pypulseq appends it otherwise), got {path.name}")
    seq = build_gre(table, shape[0], num_low_frequencies, acceleration, order, readout,
                    readout_oversampling, fov_mm)
    with atomic_path(path) as tmp:
        tmp_seq = tmp.with_name(tmp.name + ".seq")  # pypulseq insists on the suffix
        try:
            seq.write(str(tmp_seq), check_timing=False)  # checked above
            os.replace(tmp_seq, tmp)
        finally:
            if tmp_seq.exists():
                tmp_seq.unlink()
    return path


def _trap_area(g) -> float:
    if g is None:
        return 0.0
    if getattr(g, "type", "trap") == "trap":
        return float(g.amplitude * (g.flat_time + (g.rise_time + g.fall_time) / 2))
    t = np.asarray(getattr(g, "tt", []), float)
    w = np.asarray(getattr(g, "waveform", []), float)
    return float(np.trapezoid(w, t)) if t.size > 1 else 0.0


def read_pulseq(path: str | Path):
    """The sampling pattern of a ``.seq`` written by :func:`write_pulseq`.

    Lines come from the ``LIN`` labels at the ADCs and are checked against the phase-encode
    (y) gradient area accumulated since the last RF pulse (``ky = round(area * FOV) + W // 2``);
    files without labels use the areas. ``W``, ``num_low_frequencies`` and ``acceleration`` come
    from the definitions; without them ``W`` is taken from the areas' span, the calibration
    width from the ``REF`` flags and the acceleration as achieved.

    Returns
    -------
    fastmri_diffmask.sequence.SequenceTemplate
        Mask ``(W,)`` float32, calibration width, acceleration.
    """
    from .io.ismrmrd_raw import calibration_width

    pp = _pypulseq()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; give a .seq file written by export-sequence --format pulseq")
    seq = pp.Sequence()
    try:
        seq.read(str(path))
    except Exception as e:  # pypulseq raises assorted errors on malformed files
        raise UserError(f"{path} is not a readable Pulseq file ({type(e).__name__}); re-export it") from None
    defs = seq.definitions
    fov = defs.get("FOV")
    fov = float(np.atleast_1d(fov)[1]) if fov is not None and np.size(fov) >= 2 else None
    areas, area = [], 0.0
    for b in seq.block_events:
        block = seq.get_block(b)
        if block.rf is not None:
            area = 0.0
        if block.adc is not None:
            areas.append(area)
        area += _trap_area(block.gy)
    if not areas:
        raise UserError(f"{path} has no ADC events; it acquires no lines")
    labels = seq.evaluate_labels(evolution="adc")
    lin = np.asarray(labels["LIN"], np.int64) if "LIN" in labels else None
    width = defs.get(f"{_DEF}Lines")
    if fov:
        offsets = np.rint(np.asarray(areas) * fov).astype(np.int64)
        if width is None:
            width = int(lin.max()) + 1 if lin is not None else 2 * int(np.abs(offsets).max()) + 1
        from_area = offsets + int(width) // 2
        if lin is None:
            lin = from_area
        elif not np.array_equal(lin, from_area):
            raise UserError(f"{path}: the LIN labels disagree with the phase-encode gradient areas at "
                            f"{int(np.sum(lin != from_area))} readouts; the file is inconsistent")
    elif lin is None or width is None:
        raise UserError(f"{path} has neither LIN labels with a line count nor a FOV definition; "
                        "cannot place its lines")
    width = int(width)
    if lin.min() < 0 or lin.max() >= width:
        raise UserError(f"{path}: phase-encode lines {lin.min()}..{lin.max()} fall outside [0, {width})")
    mask = np.zeros(width, np.float32)
    mask[lin] = 1
    nlf = defs.get(f"{_DEF}NumLowFrequencies")
    if nlf is None:
        ref = np.asarray(labels.get("REF", np.zeros(lin.size)), bool)
        nlf = calibration_width(mask, lin[ref], np.zeros(int(ref.sum()), np.int64))
    r = defs.get(f"{_DEF}Acceleration")
    return SequenceTemplate(mask, int(nlf), float(r) if r is not None else width / float(mask.sum()))


def pulseq_labels(path: str | Path) -> dict:
    """``{label: array per ADC}`` of a ``.seq`` file (pypulseq's ``evaluate_labels``), for checks."""
    pp = _pypulseq()
    seq = pp.Sequence()
    seq.read(str(path))
    return {k: np.asarray(v) for k, v in seq.evaluate_labels(evolution="adc").items()}
