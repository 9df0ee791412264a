"""Readout oversampling of fastMRI files: crop the readout to the reconstruction field of view.

fastMRI's knee k-space is sampled with 2x readout oversampling: ``encodedSpace.matrixSize.x``
(the k-space rows, e.g. 640) is twice ``reconSpace.matrixSize.x`` (320), and the target
``reconstruction_rss`` is the central ``reconSpace`` crop of the image. Everything outside
that crop is empty field of view, yet priors, ESPIRiT and samplers run on the full grid: twice
the cost. fastMRI's models crop to the reconstruction FOV in image space; so does
:func:`crop_readout`:

1. centred orthonormal inverse FFT along the readout (rows; ``fastmri.ifft2c``'s convention);
2. keep the central ``recon_x`` rows, starting at ``(rows - recon_x) // 2`` (fastMRI's
   ``center_crop``, which also made the target);
3. centred orthonormal FFT back.

The columns (phase encode) are untouched, so line masks and the acquired column range
(``padding_left``/``padding_right``) are unaffected, and ``ifft2c`` of the cropped k-space
*equals* the central rows of ``ifft2c`` of the full k-space (the orthonormal transforms are
inverses of each other; no rescaling). Sensitivity maps are images: they are cropped to the same
rows directly (:func:`crop_rows`).

:func:`readout_rows` decides: ``"auto"`` crops where the header says the readout is
oversampled (``encodedSpace x > reconSpace x``) and the k-space has the encoded rows; ``"off"``
keeps the full grid (bit-identical to reading without this module). Files converted by
``convert-ismrmrd`` already have the oversampling removed (their encoded x equals their rows and
their recon x), so ``auto`` leaves them alone.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError

#: Values of ``--readout-crop`` / ``readout_crop``.
READOUT_CROPS = ("auto", "off")


def check_readout_crop(mode: str) -> str:
    """``mode`` if it is one of :data:`READOUT_CROPS`; else a one-line :class:`UserError`."""
    if mode not in READOUT_CROPS:
        raise UserError(f"--readout-crop must be one of {', '.join(READOUT_CROPS)}, got {mode!r}")
    return mode


def header_readout(header, where: str = "file") -> tuple[int | None, int | None]:
    """``(encodedSpace x, reconSpace x)`` matrix sizes from an ISMRMRD XML header.

    Parameters
    ----------
    header : bytes, str, ndarray or None
        The file's ``ismrmrd_header`` dataset.
    where : str
        The file, for messages.

    Returns
    -------
    (int or None, int or None)
        ``None`` for a missing header or field (found as fastMRI's ``et_query`` finds them,
        ignoring namespaces).

    Raises
    ------
    UserError
        The header is not XML, or a field is not an integer.
    """
    if header is None:
        return None, None
    from ..masks.acquired import _int_at, header_root

    root = header_root(header, where)
    enc = _int_at(root, ("encoding", "encodedSpace", "matrixSize", "x"), where)
    rec = _int_at(root, ("encoding", "reconSpace", "matrixSize", "x"), where)
    return enc, rec


def readout_rows(header, rows: int, mode: str = "auto", where: str = "file") -> int:
    """The k-space rows after the readout crop: ``reconSpace x``, or ``rows`` (no crop).

    Parameters
    ----------
    header : bytes, str, ndarray or None
        The file's ``ismrmrd_header``.
    rows : int
        The k-space rows (readout samples) as stored.
    mode : {"auto", "off"}
        ``"auto"``: crop when ``encodedSpace x == rows`` and ``0 < reconSpace x < rows`` (the
        header describes this k-space and says it is oversampled); ``"off"``: never.
    where : str
        The file, for messages.

    Returns
    -------
    int
        ``rows`` when nothing is to be cropped.
    """
    check_readout_crop(mode)
    rows = int(rows)
    if mode == "off":
        return rows
    enc, rec = header_readout(header, where)
    if enc is None or rec is None or enc != rows or not 0 < rec < rows:
        return rows
    return int(rec)


def crop_rows(images: np.ndarray, rows: int, axis: int = -2) -> np.ndarray:
    """The central ``rows`` entries of ``images`` along ``axis`` (start ``(n - rows) // 2``,
    fastMRI's ``center_crop``); ``images`` itself when ``rows >= n``."""
    n = images.shape[axis]
    if rows >= n:
        return images
    start = (n - rows) // 2
    index = [slice(None)] * images.ndim
    index[axis] = slice(start, start + rows)
    return images[tuple(index)]


def crop_readout(kspace: np.ndarray, rows: int, axis: int = -2) -> np.ndarray:
    """Crop k-space to ``rows`` readout samples in image space (see the module docstring).

    Parameters
    ----------
    kspace : ndarray
        Complex k-space, readout along ``axis`` (fastMRI: ``(..., coils, rows, cols)``).
    rows : int
        Rows to keep (``reconSpace x``).
    axis : int
        The readout axis.

    Returns
    -------
    ndarray
        Same dtype, ``rows`` long along ``axis``; ``ifft2c`` of it equals the central ``rows``
        of ``ifft2c(kspace)``. ``kspace`` itself when ``rows >= kspace.shape[axis]``. Arrays of
        more than 3 dimensions are transformed one entry of the first axis at a time, so the
        double-precision FFT never holds more than one slice.
    """
    if rows >= kspace.shape[axis]:
        return kspace
    if kspace.ndim > 3:
        ax = axis % kspace.ndim
        if ax == 0:
            raise UserError("crop_readout: the readout cannot be the first (slice) axis")
        return np.stack([crop_readout(k, rows, ax - 1) for k in kspace])
    img = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=axis), axis=axis, norm="ortho"), axes=axis)
    img = crop_rows(img, rows, axis)
    out = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(img, axes=axis), axis=axis, norm="ortho"), axes=axis)
    return out.astype(kspace.dtype, copy=False)
