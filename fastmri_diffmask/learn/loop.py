"""The mask-learning loop: Adam on the logits of a :class:`BernoulliMask` through the Tweedie
objective, with deterministic validation, best-logit selection, exact resume and nested masks.

Everything random (batch order, masks, noise levels, noise) comes from one ``torch.Generator``
seeded with ``config.seed``; validation uses its own fixed noise, drawn once from ``seed + 1``, so
validating never perturbs training. A checkpoint (safetensors) stores the logits, the best logits,
Adam's moments, the generator state, the epoch's batch order, the step and the history, so a
resumed run ends bit-identical to an uninterrupted one.

Validation (:mod:`.validate`)
    the one-step proxy every ``val_every`` steps; optionally DPS every ``dps_every`` validations,
    which then decides the best logits (the paper's v1 protocol).

References
----------
Ravula S, et al. arXiv:2306.03284 (2023); Bahadir CD, et al. IEEE TCI 2020 (LOUPE);
Kingma DP, Ba J. Adam: a method for stochastic optimization. ICLR 2015.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..masks.bernoulli import BernoulliMask, centre_distance
from ..utils import atomic_path
from .config import MIN_VAL_EVERY, LearnConfig
from .objective import objective_loss
from .validate import Validator, choose_sampled, scaled_batch

CKPT_FORMAT = "fastmri-diffmask-learn-checkpoint"


def default_num_low_frequencies(width: int, acceleration: float) -> int:
    """Default centre width: ``W / 8`` lines up to R = 4, then x0.625 per doubling of R
    (16 of 128 at R = 4, 10 at R = 8, 6 at R = 16 - the widths the validation study used), at
    least 2 and at most the budget."""
    c = width / 8 * 0.625 ** max(0.0, math.log2(acceleration / 4))
    budget = max(1, round(width / acceleration))
    return int(min(budget, max(2, round(c))))


def tau_at(cfg: LearnConfig, step: int, total: int) -> float:
    if cfg.tau_end is None or total <= 1:
        return cfg.tau
    return cfg.tau * (cfg.tau_end / cfg.tau) ** (step / (total - 1))


def lr_at(cfg: LearnConfig, step: int, total: int) -> float:
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))


def _save_ckpt(path: Path, mask: BernoulliMask, best: torch.Tensor, opt, gen, perm, step, history, meta) -> None:
    from safetensors.torch import save_file

    st = opt.state.get(mask.logits, {})
    tensors = {"logits": mask.logits.detach().cpu(), "best_logits": best.cpu(), "fixed": mask.fixed.cpu().to(torch.uint8),
               "generator": gen.get_state(), "perm": perm.cpu()}
    for k in ("step", "exp_avg", "exp_avg_sq"):
        if k in st:
            tensors[f"adam.{k}"] = st[k].detach().cpu().reshape(-1) if k == "step" else st[k].detach().cpu()
    doc = {"format": CKPT_FORMAT, "step": step, "history": history, **meta}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"learn": json.dumps(doc)})


def _load_ckpt(path: Path, meta: dict):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {})["learn"])
            t = {k: f.get_tensor(k) for k in f.keys()}
        if doc.get("format") != CKPT_FORMAT or "logits" not in t or "generator" not in t:
            raise KeyError("format")
    except Exception as e:
        raise UserError(f"checkpoint {path} is unreadable or not a learn-mask checkpoint ({type(e).__name__}); "
                        "delete it to start over") from None
    for key in ("config", "mask"):
        if doc.get(key) != meta.get(key):
            raise UserError(f"checkpoint {path} was made with different {key} settings; use the same flags or delete it")
    return doc, t


# -- the loop ----------------------------------------------------------------------------------
def learn_mask(prior, train, val, kind: str, acceleration: float, num_low_frequencies: int,
               config: LearnConfig | None = None, shape=None, corner_cut: bool = False, fixed=None,
               init_logits: torch.Tensor | None = None, checkpoint: str | Path | None = None,
               resume: bool = False, stop_after: int | None = None, progress: bool = True,
               device="cpu", acquired=None) -> tuple[BernoulliMask, dict]:
    """Learn a mask; returns ``(mask module holding the best logits, history)``.

    Parameters
    ----------
    prior : Denoiser
    train, val : SliceData
        Fully sampled slices (``val`` may be ``None``: no validation, last logits kept).
    kind, acceleration, num_low_frequencies, corner_cut, fixed, init_logits, acquired
        See :class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask` (``shape`` defaults to the
        data's ``W`` or ``(H, W)``; ``acquired``, e.g. ``train.acquired_range``, keeps every
        sample inside the acquired columns and counts the budget over them).
    config : LearnConfig
    checkpoint, resume
        Write a checkpoint every ``config.checkpoint_every`` steps and at the end; ``resume``
        continues from it (bit-identical to an uninterrupted run).
    stop_after : int, optional
        Stop (after checkpointing) once this step is reached: an interruption, for tests.

    ``history`` holds ``train`` (per step: loss, tau, lr), ``val`` (per validation: step, proxy,
    optional dps_psnr), ``best`` and, when ``config.export == "sampled"``, the chosen draw.
    """
    cfg = (config or LearnConfig()).validate(train.kspace.shape[0])
    device = torch.device(device)
    h, w = train.kspace.shape[-2:]
    if shape is None:
        shape = (w,) if kind == "line" else (h, w)
    want = (w,) if kind == "line" else (h, w)
    if tuple(np.atleast_1d(shape)) != want:
        raise UserError(f"mask shape {tuple(np.atleast_1d(shape))} does not match the data's k-space {(h, w)}; "
                        "learn the mask on data of that size")
    if val is not None and tuple(val.kspace.shape[-2:]) != (h, w):
        raise UserError(f"validation slices are {tuple(val.kspace.shape[-2:])} but training slices are {(h, w)}")
    mask = BernoulliMask(shape, acceleration, num_low_frequencies, kind=kind, corner_cut=corner_cut,
                         fixed=fixed, logits=init_logits, acquired=acquired).to(device)
    x_all, s_all = (t.to(device) for t in scaled_batch(train))
    n = x_all.shape[0]
    total = cfg.total_steps(n)
    per_epoch = math.ceil(n / cfg.batch)
    # default: once an epoch, but at most every MIN_VAL_EVERY steps (a 5-slice training set would
    # otherwise validate every 3 steps and spend most of its time there)
    val_every = max(per_epoch, MIN_VAL_EVERY) if cfg.val_every is None else cfg.val_every
    validator = Validator(prior, val, cfg, device) if val is not None and val_every else None
    opt = torch.optim.Adam([mask.logits], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    best = mask.logits.detach().clone()
    history = {"train": [], "val": [], "best": None}
    perm = torch.randperm(n, generator=gen)
    start = 0
    meta = {"config": cfg.to_dict(), "mask": {"kind": kind, "shape": list(mask.shape), "acceleration": float(acceleration),
                                               "num_low_frequencies": int(num_low_frequencies), "corner_cut": corner_cut}}
    ckpt = Path(checkpoint) if checkpoint else None
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise UserError(f"nothing to resume: no checkpoint at {ckpt}; run without --resume")
        doc, t = _load_ckpt(ckpt, meta)
        if not torch.equal(t["fixed"].bool(), mask.fixed.cpu()):
            raise UserError(f"checkpoint {ckpt} fixes different samples than this run; use the same flags or delete it")
        with torch.no_grad():
            mask.logits.copy_(t["logits"])
        best = t["best_logits"].to(device)
        if "adam.exp_avg" in t:
            opt.state[mask.logits] = {"step": t["adam.step"].reshape(()), "exp_avg": t["adam.exp_avg"].to(device),
                                      "exp_avg_sq": t["adam.exp_avg_sq"].to(device)}
        gen.set_state(t["generator"])
        perm, start, history = t["perm"], int(doc["step"]), doc["history"]

    best_key = "dps_psnr" if cfg.dps_every else "proxy"

    def better(entry) -> bool:
        if best_key not in entry:
            return False
        prev = history["best"]
        if prev is None:
            return True
        return entry[best_key] > prev["value"] if best_key == "dps_psnr" else entry[best_key] < prev["value"]

    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, desc=f"learn-mask R={acceleration:g}", unit="it", disable=not progress, leave=False)
    for step in range(start, total):
        i = step % per_epoch
        if i == 0 and step > 0:
            perm = torch.randperm(n, generator=gen)
        idx = perm[i * cfg.batch:(i + 1) * cfg.batch].to(device)
        tau, lr = tau_at(cfg, step, total), lr_at(cfg, step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = objective_loss(prior, mask, x_all[idx], s_all[idx], cfg.objective, gen, tau)
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
        history["train"].append({"step": step + 1, "loss": loss_value, "tau": tau, "lr": lr})
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4g}")
        done = step + 1
        if validator is not None and (done % val_every == 0 or done == total):
            with torch.no_grad():
                binary = mask.binarize(cfg.val_export)
            entry = {"step": done, "proxy": validator.proxy(binary, kind)}
            n_val = len(history["val"]) + 1
            if cfg.dps_every and (n_val % cfg.dps_every == 0 or done == total):
                entry["dps_psnr"] = validator.dps_psnr(binary, kind)
            history["val"].append(entry)
            if better(entry):
                history["best"] = {"step": done, "key": best_key, "value": entry[best_key]}
                best = mask.logits.detach().clone()
        if ckpt is not None and (done % cfg.checkpoint_every == 0 or done == total or done == stop_after):
            _save_ckpt(ckpt, mask, best, opt, gen, perm, done, history, meta)
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    if validator is not None and history["best"] is not None:
        with torch.no_grad():
            mask.logits.copy_(best)
    elif validator is None:
        history["best"] = {"step": len(history["train"]), "key": "last", "value": None}
    if cfg.export in ("sampled", "best") and validator is not None and (stop_after is None or stop_after >= total):
        history["export"] = choose_sampled(mask, validator, cfg, progress=progress)
    return mask, history


def export_mask(mask: BernoulliMask, history: dict, method: str) -> torch.Tensor:
    """The binary mask of an export method (``sampled`` takes the chosen draw from ``history``)."""
    if method in ("sampled", "best"):
        if "export" not in history:
            raise UserError(f"export {method!r} needs validation slices to choose a mask; use topk or quantile")
        return torch.tensor(history["export"]["mask"], dtype=torch.float32)
    return mask.binarize(method)


# -- nested masks ------------------------------------------------------------------------------
def priority(mask: BernoulliMask, entries: np.ndarray) -> np.ndarray:
    """``entries`` (flat indices) sorted by ``p'`` descending, ties towards the centre, then index."""
    p = mask.probabilities().detach().cpu().double().numpy().ravel()[entries]
    d = centre_distance(mask.shape).ravel()[entries]
    return entries[np.lexsort((entries, d, -p))]


def learn_nested(prior, train, val, kind: str, accelerations, num_low_frequencies: int,
                 config: LearnConfig | None = None, corner_cut: bool = False, progress: bool = True,
                 device="cpu", checkpoint: str | Path | None = None, resume: bool = False,
                 **kw) -> tuple[BernoulliMask, torch.Tensor, np.ndarray, list]:
    """Learn nested masks coarse to fine (e.g. R = 16, 8, 4), each with the previous samples fixed.

    Returns ``(finest mask module, its binary mask, order, histories)``; ``order`` lists every
    flat index: the centre first (nearest the centre first), then each level's additions by
    priority, then the unsampled entries by final ``p'``; its first ``round(N / R)`` entries are
    the mask at each learned ``R``. ``checkpoint`` gets one file per level (``<checkpoint>.R<r>``);
    ``resume`` resumes the levels whose checkpoint exists and learns the others afresh.
    """
    cfg = config or LearnConfig()
    accs = sorted((float(a) for a in accelerations), reverse=True)
    fixed, order, hists = None, None, []
    for r in accs:
        ck = Path(f"{checkpoint}.R{r:g}") if checkpoint else None
        mask, hist = learn_mask(prior, train, val, kind, r, num_low_frequencies, cfg, corner_cut=corner_cut,
                                fixed=fixed, progress=progress, device=device, checkpoint=ck,
                                resume=bool(resume and ck is not None and ck.is_file()), **kw)
        binary = export_mask(mask, hist, cfg.export)
        flat = binary.numpy().ravel() > 0.5
        if order is None:
            centre = np.flatnonzero(mask.fixed.cpu().numpy().ravel())
            d = centre_distance(mask.shape).ravel()[centre]
            order = list(centre[np.lexsort((centre, d))])
        taken = set(order)
        order += list(priority(mask, np.array([i for i in np.flatnonzero(flat) if i not in taken], dtype=np.int64)))
        fixed = binary
        hists.append({"acceleration": r, **hist})
    rest = np.array([i for i in range(flat.size) if i not in set(order)], dtype=np.int64)
    order = np.asarray(order + list(priority(mask, rest)), dtype=np.int64)
    return mask, binary, order, hists
