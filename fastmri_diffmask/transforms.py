"""A fastMRI data transform for diffusion-posterior reconstruction.

:class:`DiffusionDataTransform` goes where fastMRI's ``VarNetDataTransform`` goes (the
``transform`` of :class:`fastmri.data.SliceDataset`, same call signature
``(kspace, mask, target, attrs, fname, slice_num)``) and returns a :class:`DiffusionSample`:
complex masked k-space, the mask, ESPIRiT sensitivity maps and the target.

Masking follows ``VarNetDataTransform`` exactly: the mask comes from ``mask_func`` through
:func:`fastmri.data.transforms.apply_mask` with the per-volume seed
``tuple(map(ord, fname))`` (when ``use_seed``), and the columns outside
``[attrs["padding_left"], attrs["padding_right"])`` (zero-padded k-space, derived by
``SliceDataset`` from the ISMRMRD header) are zeroed in the mask. Without ``mask_func`` the
file's own ``mask`` (fastMRI test files) is used, or a full mask when there is none.

Sensitivity maps are estimated from the *masked* k-space (only what was acquired), calibrated on
the fully sampled centre of ``num_low_frequencies`` lines, by BART or sigpy
(:func:`fastmri_diffmask.recon.espirit.espirit_maps`), or read by a caller-supplied
``sens_maps_fn(fname, slice_num)`` (e.g. from a ``sens_maps`` dataset in the h5 file, which
``SliceDataset`` does not pass on). Single-coil k-space (``(H, W)``) gets one coil of ones.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

import numpy as np
import torch
from fastmri.data.subsample import MaskFunc
from fastmri.data.transforms import apply_mask, to_tensor

from .errors import UserError

__all__ = ["DiffusionSample", "DiffusionDataTransform", "SENS_BACKENDS"]

#: Accepted ``sens_backend`` values (``None``: no maps, an empty tensor).
SENS_BACKENDS = ("sigpy", "bart", "file", None)


class DiffusionSample(NamedTuple):
    """One slice for diffusion-posterior reconstruction.

    Attributes
    ----------
    masked_kspace : torch.Tensor
        ``(coils, H, W)`` complex64, zero where not sampled.
    mask : torch.Tensor
        float32 0/1, broadcastable to ``masked_kspace``: ``(1, 1, W)`` for line masks,
        ``(1, H, W)`` for point masks; padding columns are 0.
    num_low_frequencies : int
        Width of the fully sampled centre (0 when unknown).
    sens_maps : torch.Tensor
        ``(coils, H, W)`` complex64 ESPIRiT maps, or an empty tensor when ``sens_backend=None``.
    target : torch.Tensor
        The reconstruction target (``reconstruction_rss``/``_esc``), or ``torch.tensor(0)``.
    fname : str
        File name.
    slice_num : int
        Slice index.
    max_value : float
        ``attrs["max"]`` (0.0 when absent).
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    num_low_frequencies: int
    sens_maps: torch.Tensor
    target: torch.Tensor
    fname: str
    slice_num: int
    max_value: float


class DiffusionDataTransform:
    """fastMRI-style transform producing :class:`DiffusionSample`.

    Parameters
    ----------
    mask_func : fastmri.data.subsample.MaskFunc, optional
        Any fastMRI mask function, e.g. a
        :class:`~fastmri_diffmask.masks.fastmri_adapter.LearnedDiffusionMaskFunc`.
    use_seed : bool
        Seed the mask with ``tuple(map(ord, fname))`` so all slices of a volume share a mask
        (fastMRI's convention).
    sens_backend : {"sigpy", "bart", "file", None}
        How to get sensitivity maps: ESPIRiT by sigpy or BART, ``sens_maps_fn`` ("file"), or
        none.
    sens_maps_fn : callable, optional
        ``sens_maps_fn(fname, slice_num) -> (coils, H, W)`` complex array; needed by, and only
        used with, ``sens_backend="file"``.
    sens_device : str
        Device for the sigpy backend (default ``"cpu"``: transforms run in DataLoader workers).
    """

    def __init__(
        self,
        mask_func: Optional[MaskFunc] = None,
        use_seed: bool = True,
        sens_backend: Optional[str] = "sigpy",
        sens_maps_fn: Optional[Callable[[str, int], np.ndarray]] = None,
        sens_device: str = "cpu",
    ):
        if sens_backend not in SENS_BACKENDS:
            raise UserError(f"sens_backend {sens_backend!r} is not one of sigpy, bart, file, None")
        if sens_backend == "file" and not callable(sens_maps_fn):
            raise UserError("sens_backend='file' needs sens_maps_fn(fname, slice_num) returning (coils, H, W) maps")
        if sens_maps_fn is not None and sens_backend != "file":
            raise UserError(f"sens_maps_fn is only used with sens_backend='file', not {sens_backend!r}")
        self.mask_func = mask_func
        self.use_seed = use_seed
        self.sens_backend = sens_backend
        self.sens_maps_fn = sens_maps_fn
        self.sens_device = sens_device

    def __call__(
        self,
        kspace: np.ndarray,
        mask: Optional[np.ndarray],
        target: Optional[np.ndarray],
        attrs: Dict,
        fname: str,
        slice_num: int,
    ) -> DiffusionSample:
        """Mask one slice and estimate its maps (fastMRI's transform signature)."""
        kspace = np.asarray(kspace)
        if kspace.ndim == 2:  # single-coil
            kspace = kspace[None]
        if kspace.ndim != 3 or not np.iscomplexobj(kspace):
            raise UserError(f"{fname}: k-space slice must be complex (coils, H, W), got {kspace.dtype} {kspace.shape}")
        coils, h, w = kspace.shape
        kspace_torch = to_tensor(kspace.astype(np.complex64))
        acq_start = int(attrs.get("padding_left", 0))
        acq_end = int(attrs.get("padding_right", w))

        if self.mask_func is not None:
            seed = tuple(map(ord, fname)) if self.use_seed else None
            masked, mask_torch, num_low = apply_mask(
                kspace_torch, self.mask_func, seed=seed, padding=(acq_start, acq_end)
            )
        else:
            if mask is None:
                mask_torch = torch.ones(1, 1, w, 1)
            else:
                mask_np = np.asarray(mask, np.float32)
                mask_shape = (1, 1, w, 1) if mask_np.ndim == 1 else (1, *mask_np.shape, 1)
                mask_torch = torch.from_numpy(mask_np.reshape(mask_shape).copy())
            mask_torch[..., :acq_start, :] = 0
            mask_torch[..., acq_end:, :] = 0
            masked = kspace_torch * mask_torch + 0.0
            num_low = 0
        mask_out = mask_torch[..., 0].reshape(1, -1, w).to(torch.float32)
        masked_c = torch.view_as_complex(masked.contiguous())
        num_low = int(num_low or 0)

        sens = self._sens_maps(masked_c.numpy(), num_low, fname, slice_num)

        if target is not None:
            target_torch = to_tensor(np.asarray(target))
            max_value = float(attrs["max"]) if "max" in attrs else 0.0
        else:
            target_torch = torch.tensor(0)
            max_value = 0.0
        return DiffusionSample(
            masked_kspace=masked_c,
            mask=mask_out,
            num_low_frequencies=num_low,
            sens_maps=sens,
            target=target_torch,
            fname=fname,
            slice_num=slice_num,
            max_value=max_value,
        )

    def _sens_maps(self, masked_kspace: np.ndarray, num_low: int, fname: str, slice_num: int) -> torch.Tensor:
        if self.sens_backend is None:
            return torch.empty(0, dtype=torch.complex64)
        if masked_kspace.shape[0] == 1 and self.sens_backend != "file":
            return torch.ones(masked_kspace.shape, dtype=torch.complex64)
        if self.sens_backend == "file":
            maps = np.asarray(self.sens_maps_fn(fname, slice_num))
        else:
            from .recon.espirit import espirit_maps

            maps = espirit_maps(
                masked_kspace, num_low_frequencies=num_low or None, backend=self.sens_backend,
                device=self.sens_device,
            )
        if maps.shape != masked_kspace.shape:
            raise UserError(
                f"{fname} slice {slice_num}: sensitivity maps are {maps.shape}, k-space is {masked_kspace.shape}; "
                "they must match (coils, H, W)"
            )
        return torch.from_numpy(np.ascontiguousarray(maps, np.complex64))
