"""Train an EDM denoiser prior on complex MR images (CPU or GPU, optionally DDP).

EDM loss and sigma distribution (Karras et al. 2022), Adam with a linear warm-up (then a constant
lr, or a cosine decay to 0 at the last step from ``lr_decay_start``: :func:`learning_rate`), EMA weights
with EDM's ramp-up (``beta = min(decay, (1 + step) / (10 + step))``), left-right flips and a
random global phase (MR images have no absolute phase), checkpoints every N steps, and exact
resume: every random draw comes from one ``torch.Generator`` whose state is checkpointed, so a
resumed run ends bit-identical to an uninterrupted one on the same machine.

Under ``torchrun`` (``WORLD_SIZE > 1``) it runs torch.distributed DDP (gloo on CPU, nccl on GPU):
each rank draws its own batches, gradients are averaged, rank 0 writes files. Each rank uses the
GPU of its ``LOCAL_RANK``. The checkpoint holds rank 0's generator, so a resumed DDP run reseeds
the other ranks (it continues correctly but is not bit-identical to an uninterrupted one).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from ..errors import UserError
from ..physics import percentile_scale, to_channels
from ..utils import atomic_path, resolve_device
from . import shards
from .augment import MODES, AugmentConfig, augment
from .edm import EDMPrecond, edm_loss, sample_sigma
from .unet import PRESETS, UNet
from .weights import save_prior


@dataclasses.dataclass
class TrainConfig:
    steps: int = 4000
    batch: int = 8
    lr: float = 2e-4
    warmup: int = 200
    ema_decay: float = 0.999
    preset: str = "small"
    seed: int = 0
    checkpoint_every: int = 200
    phase_augment: bool = True
    flip_augment: bool = True
    log_every: int = 50
    augment: str = "basic"
    init: str | None = None
    lr_schedule: str = "constant"  # or "cosine" (learning_rate)
    lr_decay_start: int = 0


#: ``TrainConfig.lr_schedule`` values.
LR_SCHEDULES = ("constant", "cosine")


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The lr of (0-based) ``step``: ``cfg.lr`` after a linear warm-up over ``cfg.warmup`` steps;
    with ``lr_schedule="cosine"`` it then falls as ``(1 + cos(pi t)) / 2`` from ``lr_decay_start``
    (t = 0) to 0 after the last step (t = 1): the cosine annealing of Loshchilov & Hutter, "SGDR",
    ICLR 2017, without restarts. A resumed run can start its decay where the checkpoint stopped."""
    lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
    if cfg.lr_schedule == "cosine" and step >= cfg.lr_decay_start:
        t = (step + 1 - cfg.lr_decay_start) / max(cfg.steps - cfg.lr_decay_start, 1)
        lr *= 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    return lr


def scaled_training_images(images: torch.Tensor) -> torch.Tensor:
    """Complex ``(N, H, W)`` -> 2-channel ``(N, 2, H, W)`` divided by each image's 99th percentile."""
    return to_channels(images / percentile_scale(images))


def _augment(x: torch.Tensor, g: torch.Generator, cfg: TrainConfig) -> torch.Tensor:
    return augment(x, g, AugmentConfig(mode=cfg.augment, flip=cfg.flip_augment, global_phase=cfg.phase_augment))


#: Noise levels of the validation denoising loss (EDM-weighted, the same noise at every check).
VAL_SIGMAS = (0.02, 0.1, 0.5, 2.0)


def validation_loss(denoiser, groups: Sequence[torch.Tensor], seed: int = 0, batch: int = 16) -> float:
    """EDM-weighted denoising loss of ``denoiser`` on scaled 2-channel images (one tensor per
    matrix size), averaged over :data:`VAL_SIGMAS` and images, with noise drawn from its own
    seeded generator: the same number for the same weights at every call (the trainer's random
    stream is untouched, so resume stays exact)."""
    g = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    with torch.no_grad():
        for images in groups:
            for s in VAL_SIGMAS:
                for i in range(0, len(images), batch):
                    x0 = images[i:i + batch]
                    noise = torch.randn(x0.shape, generator=g).to(x0.device)
                    sigma = torch.full((len(x0),), float(s), device=x0.device)
                    total += float(edm_loss(denoiser, x0, sigma, noise)) * len(x0)
                    n += len(x0)
    return total / max(n, 1)


def _init_from(model, path: str) -> None:
    """Load the weights of a prior file into ``model`` (fine-tuning); the architectures must match."""
    from .weights import load_prior

    init = load_prior(path, device="cpu")
    if getattr(init, "config", {}).get("unet") != model.backbone.config:
        raise UserError(f"--init {path}: its UNet ({init.config.get('unet')}) is not the --size-preset's; "
                        "pass the preset it was trained with")
    model.load_state_dict({k: v.contiguous() for k, v in init.state_dict().items()})


def _ckpt_path(out: Path) -> Path:
    return out.with_name(out.stem + ".ckpt.safetensors")


def _save_checkpoint(path: Path, step: int, model, ema, opt, gen: torch.Generator, cfg: TrainConfig, log: list) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    for i, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["generator_state"] = gen.get_state()
    meta = {"step": str(step), "config": json.dumps(dataclasses.asdict(cfg)), "log": json.dumps(log)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_checkpoint(path: Path, model, ema, opt, gen: torch.Generator) -> tuple[int, list]:
    state, meta = shards.read_tensors(path)  # the file, or its committed shards (prior/shards.py)
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ema.")})
    opt_state = {}
    for k, v in state.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            opt_state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(state["generator_state"])
    return int(meta["step"]), json.loads(meta.get("log", "[]"))


def train_prior(images: torch.Tensor | Sequence[torch.Tensor], out: str | Path, cfg: TrainConfig,
                resume: bool = False, device="auto", data_id: str = "unknown", progress: bool = True,
                val_images: torch.Tensor | Sequence[torch.Tensor] | None = None) -> dict:
    """Train an EDM UNet prior on complex images ``(N, H, W)`` and write ``out`` (EMA weights),
    ``out.json`` (card) and ``<out>.ckpt.safetensors`` (resumable checkpoint) and ``<out>.csv``.

    ``images`` may also be a list of such tensors of different matrix sizes (a fastMRI brain
    folder): the denoiser is size-agnostic (it pads any size, :mod:`.padding`), so each step
    draws its whole batch from one size, chosen with probability proportional to that size's
    number of images; nothing is cropped or padded to a common size. One tensor trains exactly
    as before (no extra random draw). The card's ``image_size`` is the first tensor's size,
    ``image_sizes`` lists all.

    ``val_images`` (same forms): at every checkpoint the EMA weights' :func:`validation_loss` is
    logged (``val_loss`` in the CSV and card) and the best so far written to ``<out>.best.safetensors``.
    ``cfg.init`` names a prior file to start from (fine-tuning) instead of random weights;
    ``cfg.augment`` picks the augmentation (:mod:`.augment`).

    Returns the card dict.
    """
    if cfg.augment not in MODES:
        raise UserError(f"unknown --augment {cfg.augment!r}; use one of {', '.join(MODES)}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"unknown --lr-schedule {cfg.lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
    if cfg.preset not in PRESETS:
        raise UserError(f"unknown --size-preset {cfg.preset!r}; use one of {', '.join(PRESETS)}")
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    own_group = False
    if world > 1:
        import torch.distributed as dist

        if dev.type == "cuda" and dev.index is None:  # one GPU per local rank, as torchrun expects
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            own_group = True
    out = Path(out)
    groups = [images] if isinstance(images, torch.Tensor) else list(images)
    if not groups or any(len(g) == 0 for g in groups):
        raise UserError("train-prior needs at least one training image of each matrix size; check the data folder")
    data = [scaled_training_images(g).to(dev) for g in groups]  # any H x W: EDMPrecond pads to the UNet's multiple
    weights = torch.tensor([float(len(d)) for d in data])
    torch.manual_seed(cfg.seed)
    model = EDMPrecond(UNet(in_channels=2, **PRESETS[cfg.preset]))
    ckpt = _ckpt_path(out)
    if cfg.init and not (resume and shards.exists(ckpt)):  # a checkpoint's weights replace the init's
        _init_from(model, cfg.init)
    model = model.to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    val = [] if val_images is None else [val_images] if isinstance(val_images, torch.Tensor) else list(val_images)
    val = [scaled_training_images(v).to(dev) for v in val if len(v)]
    best_path = out.with_name(out.stem + ".best.safetensors")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step, log = 0, []
    if resume and shards.exists(ckpt):
        step, log = _load_checkpoint(ckpt, model, ema, opt, gen)
        if rank:  # the checkpoint holds rank 0's generator: the other ranks need their own streams
            gen.manual_seed((cfg.seed * 1000 + rank) * 1_000_003 + step)
    elif resume:
        print(f"no checkpoint at {ckpt}; starting from step 0")
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    t0, losses = time.time(), []
    bar = tqdm(total=cfg.steps, initial=step, desc="train-prior", unit="step", disable=not progress or rank != 0)
    while step < cfg.steps:
        group = data[0] if len(data) == 1 else data[int(torch.multinomial(weights, 1, generator=gen))]
        idx = torch.randint(len(group), (cfg.batch,), generator=gen)  # one matrix size per batch
        x0 = _augment(group[idx].cpu(), gen, cfg).to(dev)
        sigma = sample_sigma(cfg.batch, gen).to(dev)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        loss = edm_loss(net, x0, sigma, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        beta = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - beta)
        step += 1
        losses.append(loss.item())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.append({"step": step, "loss": sum(losses) / len(losses), "seconds": round(time.time() - t0, 1)})
            bar.set_postfix(loss=f"{log[-1]['loss']:.4f}")
            losses = []
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            if val:
                vl = validation_loss(ema, val)
                best = min((e["val_loss"] for e in log if "val_loss" in e), default=math.inf)
                log.append({"step": step, "val_loss": vl})
                if vl < best:
                    save_prior(best_path, ema, _card(model, cfg, data, data_id, step, log, world))
            _save_checkpoint(ckpt, step, model, ema, opt, gen, cfg, log)
    bar.close()
    card = _card(model, cfg, data, data_id, step, log, world)
    if rank == 0:
        save_prior(out, ema, card)
        with atomic_path(out.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=["step", "loss", "seconds", "val_loss"])
            wr.writeheader()
            wr.writerows(log)
    if own_group:
        dist.barrier()  # rank 0's files are written before any rank returns
        dist.destroy_process_group()
    card["_ema"] = ema
    return card


def _card(model, cfg: TrainConfig, data: list, data_id: str, step: int, log: list, world: int) -> dict:
    train_log = [e for e in log if "loss" in e]
    vals = [e for e in log if "val_loss" in e]
    best = min(vals, key=lambda e: e["val_loss"]) if vals else None
    h, w = data[0].shape[-2:]
    return {
        "kind": "edm-unet", "unet": model.backbone.config, "sigma_data": model.sigma_data,
        "image_size": [h, w], "image_sizes": [list(d.shape[-2:]) for d in data],
        "scaling": "complex image / 99th percentile of magnitude",
        "data": data_id, "num_images": sum(len(d) for d in data), "train": dataclasses.asdict(cfg), "steps": step,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": train_log[-1]["loss"] if train_log else None, "world_size": world,
        **({"val_loss": vals[-1]["val_loss"], "best_val_loss": best["val_loss"], "best_val_step": best["step"]}
           if vals else {}),
    }


def export_checkpoint(ckpt: str | Path, out: str | Path, extra: dict | None = None) -> Path:
    """Write the EMA weights of a training checkpoint (a file, or its shards) as a loadable prior
    file (``load_prior``)."""
    state, meta = shards.read_tensors(ckpt)
    cfg = TrainConfig(**json.loads(meta["config"]))
    log = [e for e in json.loads(meta.get("log", "[]")) if "loss" in e]
    model = EDMPrecond(UNet(in_channels=2, **PRESETS[cfg.preset]))
    model.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ema.")})
    card = {"kind": "edm-unet", "unet": model.backbone.config, "sigma_data": model.sigma_data,
            "train": dataclasses.asdict(cfg), "steps": int(meta["step"]),
            "final_loss": log[-1]["loss"] if log else None,
            "parameters": sum(p.numel() for p in model.parameters()), **(extra or {})}
    return save_prior(out, model, card)
