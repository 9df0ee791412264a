"""A small binding to the BART command-line tools.

:func:`run_bart` writes its numpy inputs as ``.cfl`` files into a temporary directory, runs one
``bart`` command on them and reads the outputs back. The layout helpers move arrays between
fastMRI's ``(coils, H, W)`` and BART's ``(x, y, z, coil, maps)`` with ``x = H`` (readout) and
``y = W`` (phase encode).

The binary is found through the environment variable ``FASTMRI_DIFFMASK_BART`` when set, else on
``PATH``. BART's FFT (``bart fft -u 3``) is the centred orthonormal 2D FFT, the same as
``fastmri.fft2c``, so k-space moves between the two without rescaling.

References
----------
Uecker M, Ong F, Tamir JI, et al. Berkeley Advanced Reconstruction Toolbox. Proc. ISMRM 2015;
23:2486. https://mrirecon.github.io/bart/
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from .cfl import read_cfl, write_cfl

__all__ = [
    "BART_ENV",
    "BartError",
    "bart_path",
    "require_bart",
    "bart_version",
    "run_bart",
    "kspace_to_bart",
    "kspace_from_bart",
    "image_to_bart",
    "image_from_bart",
    "mask_to_bart",
]

#: Environment variable that points to a ``bart`` executable (overrides ``PATH``).
BART_ENV = "FASTMRI_DIFFMASK_BART"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # BART colours its ERROR lines

_INSTALL_HINT = "bart not found on PATH; install it with: apt-get install bart"


class BartError(RuntimeError):
    """A ``bart`` command exited with an error; ``stderr`` holds BART's raw message.

    The exception text carries the command and the message without BART's colour codes.
    """

    def __init__(self, command: Sequence[str], returncode: int, stderr: str, stdout: str = ""):
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        msg = _ANSI.sub("", stderr).strip() or _ANSI.sub("", stdout).strip() or "(no output)"
        super().__init__(f"bart {' '.join(self.command)} failed with exit code {returncode}: {msg}")


def bart_path() -> str | None:
    """Path of the ``bart`` executable, or ``None`` when there is none.

    ``$FASTMRI_DIFFMASK_BART`` wins over ``PATH`` when set (to a file or a command name).
    """
    env = os.environ.get(BART_ENV)
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return os.path.abspath(env)
        return shutil.which(env)
    return shutil.which("bart")


def require_bart() -> str:
    """Return the ``bart`` executable or raise a one-line :class:`UserError` saying how to get it."""
    path = bart_path()
    if path is not None:
        return path
    env = os.environ.get(BART_ENV)
    if env:
        raise UserError(f"{BART_ENV}={env} is not an executable bart; point it to the bart binary or unset it")
    raise UserError(_INSTALL_HINT)


def bart_version() -> str:
    """BART's version string, e.g. ``"v0.8.00"``."""
    res = subprocess.run(["bart", "version"], executable=require_bart(), capture_output=True, text=True, check=False)
    return res.stdout.strip()


def run_bart(
    command: str | Sequence[str],
    *inputs: np.ndarray,
    num_outputs: int = 1,
    threads: int | None = None,
) -> np.ndarray | tuple[np.ndarray, ...] | None:
    """Run one BART tool on numpy arrays.

    Parameters
    ----------
    command : str or sequence of str
        The tool and its options without file names, e.g. ``"pics -S -l1 -r 0.01"`` or
        ``["fft", "-u", "3"]``. Input then output file names are appended in that order, which
        is BART's convention for every tool.
    *inputs : np.ndarray
        Input arrays in BART's dimension order (see the layout helpers).
    num_outputs : int
        How many output arrays the command writes (0 for tools that only print).
    threads : int, optional
        Sets ``OMP_NUM_THREADS`` for the command. Default: the caller's ``OMP_NUM_THREADS`` if
        set, else 1. BART's OpenMP threads spin when the cores are busy: on a 2-core machine
        shared with a training job, 2 threads made ``pics`` 10-40x slower than 1.

    Returns
    -------
    np.ndarray, tuple of np.ndarray, or None
        One array when ``num_outputs == 1``, a tuple when more, ``None`` when 0. Trailing singleton
        dimensions are dropped.

    Raises
    ------
    BartError
        The command failed; the exception carries BART's stderr.
    """
    exe = require_bart()
    args = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not args:
        raise UserError("empty BART command; pass a tool name such as 'fft -u 3'")
    if num_outputs < 0:
        raise UserError(f"num_outputs must be >= 0, got {num_outputs}")
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(int(threads))
    else:
        env.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="fastmri_diffmask_bart_") as tmp:
        tmpdir = Path(tmp)
        in_names = [f"in{i}" for i in range(len(inputs))]
        out_names = [f"out{i}" for i in range(num_outputs)]
        for name, arr in zip(in_names, inputs):
            write_cfl(tmpdir / name, arr)
        full = args + in_names + out_names
        # argv[0] is always "bart": BART dispatches on its program name (a binary or link named
        # otherwise would be taken for a tool name).
        res = subprocess.run(
            ["bart", *full], executable=exe, cwd=tmpdir, env=env, capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            raise BartError(full, res.returncode, res.stderr, res.stdout)
        outs = tuple(read_cfl(tmpdir / name) for name in out_names)
    if num_outputs == 0:
        return None
    return outs[0] if num_outputs == 1 else outs


# --- layout helpers --------------------------------------------------------------------------


def kspace_to_bart(kspace: np.ndarray) -> np.ndarray:
    """fastMRI ``(coils, H, W)`` (or single-coil ``(H, W)``) -> BART ``(H, W, 1, coils)``."""
    k = np.asarray(kspace)
    if k.ndim == 2:
        k = k[None]
    if k.ndim != 3:
        raise UserError(f"k-space must be shaped (coils, H, W), got {k.shape}")
    return np.ascontiguousarray(np.moveaxis(k, 0, -1)[:, :, None, :]).astype(np.complex64, copy=False)


def kspace_from_bart(array: np.ndarray) -> np.ndarray:
    """BART ``(H, W, 1, coils[, 1 maps])`` -> fastMRI ``(coils, H, W)`` complex64.

    Works for coil k-space, coil images and single-map sensitivities alike.
    """
    a = np.asarray(array)
    if a.ndim < 2:
        raise UserError(f"expected a BART array with at least 2 dims (x, y), got shape {a.shape}")
    a = a.reshape(a.shape + (1,) * max(0, 5 - a.ndim))
    if a.shape[2] != 1 or any(d != 1 for d in a.shape[4:]):
        raise UserError(f"expected BART dims (H, W, 1, coils, 1), got {a.shape}; select one slice/map first")
    return np.ascontiguousarray(np.moveaxis(a[:, :, 0, :, 0], -1, 0)).astype(np.complex64, copy=False)


def image_to_bart(image: np.ndarray) -> np.ndarray:
    """fastMRI image ``(H, W)`` -> BART ``(H, W)`` complex64 (same axes; BART pads the rest)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise UserError(f"image must be shaped (H, W), got {img.shape}")
    return img.astype(np.complex64)


def image_from_bart(array: np.ndarray) -> np.ndarray:
    """BART single image ``(H, W, 1, ...)`` -> ``(H, W)`` complex64."""
    a = np.asarray(array)
    if a.ndim < 2 or any(d != 1 for d in a.shape[2:]):
        raise UserError(f"expected a single BART image (H, W), got shape {a.shape}")
    return a.reshape(a.shape[:2]).astype(np.complex64, copy=False)


def mask_to_bart(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 1D line mask ``(W,)`` or 2D mask ``(H, W)`` -> BART pattern ``(H, W)`` complex64."""
    h, w = shape
    m = np.asarray(mask, dtype=np.float32).squeeze()
    if m.shape == (w,):
        m = np.broadcast_to(m[None, :], (h, w))
    if m.shape != (h, w):
        raise UserError(f"mask shape {np.shape(mask)} does not fit k-space (H, W) = {(h, w)}; pass (W,) or (H, W)")
    return np.ascontiguousarray(m).astype(np.complex64)
