"""Save and load priors as safetensors with a JSON config; never unpickle user files.

A prior file is a ``.safetensors`` file whose metadata key ``"fastmri_diffmask_prior"`` holds a
JSON config: ``{"format": "fastmri-diffmask-prior", "version": 1, "kind": "edm-unet" |
"gaussian", ...}``. ``load_prior("default")`` loads the weights shipped in the package
(``prior/default/``); ``load_prior(path)`` loads a user's file. ``.pt``/``.pth`` checkpoints are
read with ``torch.load(weights_only=True)`` and must be a dict ``{"config": {...},
"state_dict": {...}}``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from ..errors import UserError
from ..utils import atomic_path, file_sha256, resolve_device
from .base import Denoiser

FORMAT = "fastmri-diffmask-prior"
META_KEY = "fastmri_diffmask_prior"
#: The default prior (issue 14): trained on Colin27, ICBM152 and INIA19 with augmentation
#: (``prior/default/CORPUS.md``); ``colin27-v1`` is the one-head prior every benchmark before it used.
DEFAULT_NAME = "edm_unet_brains_128.safetensors"
#: Priors shipped in ``prior/default/`` by name: ``"default"`` and earlier defaults kept so that
#: the benchmarks measured with them reproduce (``--prior colin27-v1``).
SHIPPED = {"default": DEFAULT_NAME, "colin27-v1": "edm_unet_colin27_128.safetensors"}


def default_prior_path(name: str = "default") -> Path:
    return Path(str(resources.files(__package__).joinpath("default", SHIPPED[name])))


def build_prior(config: dict) -> Denoiser:
    """Instantiate an (untrained) prior from its config."""
    kind = config.get("kind")
    if kind == "edm-unet":
        from .edm import EDMPrecond
        from .unet import UNet

        return EDMPrecond(UNet(**config["unet"]), sigma_data=config.get("sigma_data", 0.5))
    if kind == "gaussian":
        from .gaussian import GaussianPrior

        return GaussianPrior.from_config(config)
    raise UserError(f"unknown prior kind {kind!r} in the prior config; expected 'edm-unet' or 'gaussian'")


def save_prior(path: str | Path, prior: Denoiser, config: dict) -> Path:
    """Write ``prior``'s weights and ``config`` (which must build the same architecture)."""
    from safetensors.torch import save_file

    cfg = dict(config, format=FORMAT, version=1)
    state = {k: v.detach().cpu().contiguous() for k, v in prior.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(cfg)})
    return Path(path)


def _read(path: Path) -> tuple[dict, dict]:
    if path.suffix in (".pt", ".pth", ".ckpt"):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"refusing to unpickle {path}: it is not a plain weights file ({type(e).__name__}); "
                            "save {'config': ..., 'state_dict': ...} or convert it to safetensors") from None
        if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
            raise UserError(f"{path} must hold a dict with 'config' and 'state_dict'; see fastmri_diffmask.prior.weights")
        return blob["config"], blob["state_dict"]
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise UserError(f"{path} is not a readable safetensors prior ({type(e).__name__}); re-export it") from None
    if META_KEY not in meta:
        raise UserError(f"{path} has no fastmri-diffmask prior config in its metadata; save it with save_prior()")
    return json.loads(meta[META_KEY]), state


def prior_path(name_or_path: str | Path) -> Path:
    """The file a prior name (:data:`SHIPPED`) or path names; a one-line :class:`UserError` when
    there is none (checked before any data are read)."""
    if str(name_or_path) in SHIPPED:
        path = default_prior_path(str(name_or_path))
        if not path.is_file():
            raise UserError(f"the shipped prior {str(name_or_path)!r} is missing ({path}); reinstall or train one "
                            "with `fastmri-diffmask train-prior`")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise UserError(f"unknown prior {str(name_or_path)!r}: not a shipped one ({', '.join(SHIPPED)}) and no such file")
    return path


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`~fastmri_diffmask.prior.PRECISIONS`, else a one-line
    :class:`UserError` (checked before any data are read)."""
    from . import PRECISIONS

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def has_bfloat16_units(device) -> bool:
    """Whether ``device`` is a CPU with bfloat16 units (Intel AMX or AVX-512-BF16)."""
    return torch.device(device).type == "cpu" and bool(
        torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(precision: str, prior: Denoiser) -> str:
    """``"auto"`` -> ``"bfloat16"`` for a network prior on a CPU with bfloat16 units, else
    ``"float32"``; any other value is checked (:func:`check_precision`) and returned."""
    if precision != "auto":
        return check_precision(precision)
    if not hasattr(prior, "precision"):
        return "float32"
    return "bfloat16" if has_bfloat16_units(next(prior.parameters()).device) else "float32"


def set_precision(prior: Denoiser, precision: str) -> Denoiser:
    """Set a loaded prior's backbone precision (:class:`~fastmri_diffmask.prior.edm.EDMPrecond`).

    ``"bfloat16"`` needs a network prior (an analytic prior such as the Gaussian has no backbone:
    :class:`UserError`) and warns on a CPU without bfloat16 units (AMX or AVX-512-BF16), where it
    runs but is slower than float32.
    """
    check_precision(precision)
    if not hasattr(prior, "precision"):
        if precision != "float32":
            raise UserError(f"precision {precision} applies to network priors; this prior "
                            f"({getattr(prior, 'prior_id', type(prior).__name__)}) has no backbone: use float32")
        return prior
    device = next(prior.parameters()).device
    if precision == "bfloat16" and device.type == "cpu" and not has_bfloat16_units(device):
        import warnings

        warnings.warn("this CPU has no bfloat16 units (AMX / AVX-512-BF16): precision bfloat16 runs, but more slowly "
                      "than float32", stacklevel=2)
    prior.precision = precision
    return prior


def load_prior(name_or_path: str | Path = "default", device="auto", precision: str = "float32") -> Denoiser:
    """Load a prior: a shipped one by name (``"default"``, or an earlier default in
    :data:`SHIPPED`), or a path to a ``.safetensors`` / ``.pt`` file.

    ``precision`` is the network's arithmetic (:func:`set_precision`): ``"float32"`` (default) or
    ``"bfloat16"`` (about 2x faster on CPUs with bfloat16 units, reconstructions within 0.003 dB:
    BENCHMARKS.md, "bfloat16 denoiser").

    The returned module is in eval mode with gradients disabled for its parameters, and carries
    ``.config`` and ``.sha256`` (recorded in mask files). Convolutional priors are laid out
    ``channels_last``: the same numbers up to float rounding, 1.16x faster for DPS on CPU
    (``benchmarks/bench_layout.py``, BENCHMARKS.md P3).
    """
    check_precision(precision)
    path = prior_path(name_or_path)
    config, state = _read(path)
    prior = build_prior(config)
    missing, unexpected = [], []
    own = prior.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape_bad = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shape_bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape_bad:
            k = shape_bad[0]
            parts.append(f"{len(shape_bad)} wrong shapes (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise UserError(f"weights in {path} do not fit the architecture in its config: {'; '.join(parts)}")
    prior.load_state_dict(state)
    prior.eval().requires_grad_(False)
    prior.config = config
    prior.sha256 = file_sha256(path)
    prior.source = str(name_or_path) if str(name_or_path) in SHIPPED else str(path)
    return set_precision(prior.to(resolve_device(device), memory_format=torch.channels_last), precision)
