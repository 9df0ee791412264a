"""Warm starts for the DDS sampler: begin at a lower noise level from a cheap estimate.

Chung, Sim and Ye ("Come-closer-diffuse-faster", CVPR 2022) show that a reverse diffusion started
from a forward-diffused *estimate* ``x_start = x_init + sigma_start n`` at a moderate noise level
contracts the estimate's error as fast as a run from pure noise at ``sigma_max``, so most of the
expensive high-noise steps can be skipped. :func:`~fastmri_diffmask.sample.dds.dds_reconstruct`
takes ``init`` and ``sigma_start`` and then runs EDM's rho schedule from ``sigma_start`` down to
``sigma_min`` with ``steps`` levels.

Estimates (all in the sampler's scaled units, the measurements divided by the 99th percentile of
the zero-filled magnitude):

``"noise"``        none: today's start, ``sigma_max n`` (or ``sigma_start n``).
``"zero-filled"``  ``A^H y``.
``"sense"``        ``argmin_x ||A x - y||^2 + lamda ||x||^2`` (Tikhonov-regularised SENSE,
                   Pruessmann et al. 1999) by :data:`SENSE_ITERS` conjugate-gradient steps from 0;
                   about the cost of one step of the sampler's own data consistency.
``"l1"``           BART ``pics -l1`` with the validated lamda (:func:`~fastmri_diffmask.recon.classical.default_lamda`),
                   :func:`~fastmri_diffmask.recon.classical.l1_wavelet_recon`; costs as much as
                   the classical reconstruction itself.

References
----------
Chung H, Sim B, Ye JC. Come-closer-diffuse-faster: accelerating conditional diffusion models for
inverse problems through stochastic contraction. CVPR 2022.
Pruessmann KP, Weiger M, Scheidegger MB, Boesiger P. SENSE: sensitivity encoding for fast MRI.
Magn Reson Med 1999;42:952-962.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..errors import UserError
from ..physics import MultiCoilOperator, to_channels
from .schedule import SamplingSetup, data_consistency, mask_acceleration, prepare_sampling

#: The starting estimates :func:`initial_estimate` knows.
INITS = ("noise", "zero-filled", "sense", "l1")
#: CG iterations and Tikhonov weight of the ``"sense"`` start (scaled units, ``A^H A <= 1``).
SENSE_ITERS = 10
SENSE_LAMDA = 0.01


def check_warm_start(init, sigma_start, sigma_min: float = 0.002) -> float | None:
    """Validate ``init`` and ``sigma_start``; returns ``sigma_start`` as a float (or ``None``).

    Raises :class:`~fastmri_diffmask.errors.UserError` with one line on a bad value.
    """
    if not isinstance(init, str) or init not in INITS:
        raise UserError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if sigma_start is None:
        return None
    if isinstance(sigma_start, bool) or not isinstance(sigma_start, numbers.Real) \
            or not math.isfinite(float(sigma_start)) or not float(sigma_start) > sigma_min:
        raise UserError(f"sigma_start must be a finite number > sigma_min = {sigma_min:g}, got {sigma_start!r}")
    return float(sigma_start)


def check_eta(eta) -> float | None:
    """Validate the fresh-noise fraction ``eta`` of the DDS step: ``None`` or a number in [0, 1]."""
    if eta is None:
        return None
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0 <= float(eta) <= 1:
        raise UserError(f"eta must be a number in [0, 1] (or None), got {eta!r}")
    return float(eta)


def sense_estimate(op: MultiCoilOperator, y: torch.Tensor, iters: int = SENSE_ITERS,
                   lamda: float = SENSE_LAMDA) -> torch.Tensor:
    """``argmin_x ||A x - y||^2 + lamda ||x||^2`` by ``iters`` CG steps from 0 (complex ``(B, H, W)``)."""
    zero = torch.zeros(y.shape[0], *y.shape[-2:], dtype=y.dtype, device=y.device)
    return data_consistency(op, y, zero, lamda, iters)


def l1_estimate(masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """BART ``pics -l1`` per slice with the validated lamda, in the k-space's own units (complex ``(B, H, W)``)."""
    from ..recon.classical import default_lamda, l1_wavelet_recon

    k = masked_kspace.detach().cpu().numpy()
    maps = sens_maps.detach().cpu().numpy()
    m = mask.float().cpu()
    while m.dim() < 4:
        m = m.unsqueeze(0)
    m = torch.broadcast_to(m, (m.shape[0], 1, *k.shape[-2:])).numpy()
    out = []
    for i in range(len(k)):
        mi = m[min(i, len(m) - 1), 0]
        lamda = default_lamda(mask_acceleration(torch.from_numpy(mi)[None, None], k.shape[-2:]))
        out.append(l1_wavelet_recon(k[i], mi, maps[i], lamda=lamda, backend="bart"))
    return torch.from_numpy(np.stack(out)).to(masked_kspace.device)


def initial_estimate(init: str, op: MultiCoilOperator, y: torch.Tensor, scale: torch.Tensor,
                     masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor | None:
    """The starting estimate in scaled units (complex ``(B, H, W)``), ``None`` for ``"noise"``.

    ``op`` and ``y`` are the sampler's operator and scaled measurements, ``scale`` ``(B, 1, 1)``
    the scale they were divided by; the raw ``masked_kspace``, ``mask`` and ``sens_maps`` feed the
    ``"l1"`` start, which runs in the data's own units.
    """
    check_warm_start(init, None)
    if init == "noise":
        return None
    if init == "zero-filled":
        return op.adjoint(y)
    if init == "sense":
        return sense_estimate(op, y)
    return l1_estimate(masked_kspace, mask, sens_maps).to(y.dtype) / scale


def warm_sampling(masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor, steps: int, churn: float,
                  generator: torch.Generator | None, init: str = "noise", sigma_start: float | None = None,
                  sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> SamplingSetup:
    """:func:`~fastmri_diffmask.sample.schedule.prepare_sampling` with the warm start applied: the
    schedule runs from ``sigma_start`` (``sigma_max`` when ``None``) and the initial state is
    ``x_init + sigma_start n`` (pure noise for ``init="noise"``). Shared by DPS and DDS."""
    start = check_warm_start(init, sigma_start, sigma_min)
    p = prepare_sampling(masked_kspace, mask, sens_maps, steps, churn, generator, sigma_min,
                         sigma_max if start is None else start, rho)
    with torch.no_grad():
        x_init = initial_estimate(init, p.op, p.y, p.scale, masked_kspace, mask, sens_maps)
    if x_init is None:
        return p
    return p._replace(x=p.x + to_channels(x_init).to(p.x.dtype))
