"""Multi-coil Cartesian MRI physics in torch: A = M F S, its adjoint, RSS and scaling.

Conventions follow fastMRI: k-space is ``(..., coils, H, W)`` complex with H the readout (rows)
and W the phase-encode direction (columns); the FFT is the centred orthonormal 2D FFT of
``fastmri.fft2c``. Images handed to a denoiser are 2-channel real tensors ``(B, 2, H, W)``
(real, imaginary); physics works on complex tensors ``(B, H, W)``. A mask is any real tensor
broadcastable to ``(B, coils, H, W)``: a line mask ``(B, 1, 1, W)`` or a point mask
``(B, 1, H, W)``.
"""

from __future__ import annotations

import torch


def unshift(x: torch.Tensor) -> torch.Tensor:
    """``ifftshift`` over the last two axes: centred layout -> the plain FFT's layout."""
    return torch.fft.ifftshift(x, dim=(-2, -1))


def reshift(x: torch.Tensor) -> torch.Tensor:
    """``fftshift`` over the last two axes: the inverse of :func:`unshift` (odd sizes too)."""
    return torch.fft.fftshift(x, dim=(-2, -1))


def fft2(x: torch.Tensor) -> torch.Tensor:
    """Plain (uncentred) orthonormal 2D FFT over the last two axes."""
    return torch.fft.fft2(x, dim=(-2, -1), norm="ortho")


def ifft2(k: torch.Tensor) -> torch.Tensor:
    """Plain (uncentred) orthonormal 2D inverse FFT over the last two axes."""
    return torch.fft.ifft2(k, dim=(-2, -1), norm="ortho")


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two axes of a complex tensor (= fastmri.fft2c)."""
    return reshift(fft2(unshift(x)))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D inverse FFT over the last two axes (= fastmri.ifft2c)."""
    return reshift(ifft2(unshift(k)))


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, H, W)`` -> 2-channel real ``(B, 2, H, W)``."""
    return torch.stack([x.real, x.imag], dim=1)


def to_complex(x: torch.Tensor) -> torch.Tensor:
    """2-channel real ``(B, 2, H, W)`` -> complex ``(B, H, W)``."""
    return torch.complex(x[:, 0], x[:, 1])


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares coil combination (fastMRI's ``rss_complex``) over ``dim``."""
    return torch.sqrt((coil_images.abs() ** 2).sum(dim))


def combine_coils(coil_images: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Coil combination with maps: ``sum_c conj(S_c) x_c`` over the coil axis (-3)."""
    return (sens_maps.conj() * coil_images).sum(-3)


class MultiCoilOperator:
    """The forward model ``A x = M F S x`` of multi-coil Cartesian MRI and its adjoint.

    Parameters
    ----------
    sens_maps : complex tensor ``(B, C, H, W)``
        Coil sensitivity maps.
    mask : real tensor broadcastable to ``(B, C, H, W)``, optional
        Sampling mask (0/1, or a relaxed mask in [0, 1] during learning). ``None`` means fully
        sampled.
    centred : bool
        ``True`` (default): fastMRI's centred FFT. ``False``: the plain FFT, for an operator whose
        maps, mask, images and k-space are all stored ``ifftshift``-ed (see :meth:`uncentred`).

    Notes
    -----
    ``adjoint`` is the exact adjoint of ``forward`` for a 0/1 mask (``M^H = M``); for a relaxed
    mask the pair is ``(M F S, S^H F^H M)``, still adjoint to each other.
    """

    def __init__(self, sens_maps: torch.Tensor, mask: torch.Tensor | None = None, centred: bool = True):
        if not torch.is_complex(sens_maps) or sens_maps.dim() != 4:
            raise ValueError("sens_maps must be a complex tensor shaped (B, coils, H, W)")
        self.sens_maps = sens_maps
        self.mask = mask
        self.centred = centred
        self._conj_maps = None

    def uncentred(self) -> "MultiCoilOperator":
        """The same operator on ``ifftshift``-ed arrays, with the plain FFT and no shifts.

        The shifts commute with every elementwise product, so ``A x = fftshift(A' ifftshift(x))``
        with ``A'`` this operator. An iterative solver that shifts its input once and its result
        back once skips the four full-array copies per ``A^H A`` that ``fft2c``/``ifft2c`` make
        (they took more time than the FFTs themselves in the CG of the samplers).
        """
        if not self.centred:
            return self
        mask = self.mask
        if mask is not None:
            mask = unshift(mask.reshape((1,) * max(0, 2 - mask.dim()) + tuple(mask.shape)))
        return MultiCoilOperator(unshift(self.sens_maps), mask, centred=False)

    def _apply_mask(self, k: torch.Tensor) -> torch.Tensor:
        return k if self.mask is None else k * self.mask

    def _combine(self, coil_images: torch.Tensor) -> torch.Tensor:
        """``sum_c conj(S_c) x_c`` with the conjugate maps materialised once: a multiply by
        ``sens_maps.conj()`` (a lazy conjugate view) costs 1.6x one by a plain tensor. Not cached
        for maps that require grad, so that every graph gets its own conjugate."""
        if self.sens_maps.requires_grad:
            return combine_coils(coil_images, self.sens_maps)
        if self._conj_maps is None:
            self._conj_maps = self.sens_maps.conj().resolve_conj()
        return (self._conj_maps * coil_images).sum(-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Complex image ``(B, H, W)`` -> masked multi-coil k-space ``(B, C, H, W)``."""
        coil_images = self.sens_maps * x.unsqueeze(-3)
        k = fft2c(coil_images) if self.centred else fft2(coil_images)
        return self._apply_mask(k)

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        """Multi-coil k-space ``(B, C, H, W)`` -> complex image ``(B, H, W)``."""
        k = self._apply_mask(k)
        coil_images = ifft2c(k) if self.centred else ifft2(k)
        return self._combine(coil_images)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x = S^H F^H M^2 F S x``: the mask's square (a line or point array, not k-space
        sized) applied once instead of the mask twice."""
        coil_images = self.sens_maps * x.unsqueeze(-3)
        k = fft2c(coil_images) if self.centred else fft2(coil_images)
        if self.mask is not None:
            k = k * (self.mask * self.mask)
        coil_images = ifft2c(k) if self.centred else ifft2(k)
        return self._combine(coil_images)

    __call__ = forward


def percentile_scale(image: torch.Tensor, q: float = 0.99) -> torch.Tensor:
    """The paper's scale: the ``q`` quantile of ``|image|`` per batch item, shape ``(B, 1, 1)``.

    Dividing a complex image by it puts the bright tissue near magnitude 1 (Ravula et al. 2023,
    arXiv 2306.03284, data scaling). At test time compute it from the zero-filled estimate.
    """
    mag = image.abs().flatten(1)
    return torch.quantile(mag.float(), q, dim=1).clamp_min(1e-12).view(-1, 1, 1)
