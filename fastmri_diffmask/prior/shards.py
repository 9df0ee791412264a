"""Safetensors files split into shards under a size limit, so that a training checkpoint can be
committed to a git host that caps file sizes.

The layout follows Hugging Face's sharded checkpoints (``model.safetensors.index.json``): next
to where ``NAME.safetensors`` would be, ``NAME.safetensors.index.json`` maps every tensor name to
one of the shard files ``NAME-00001-of-0000N.safetensors`` and keeps the file's string metadata.
:func:`read_tensors` reads either form, so code that loads a checkpoint needs no second path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..utils import atomic_path

#: Default shard size: under the 20 MB file limit of the project's git host with room to spare.
MAX_SHARD_BYTES = 15 * 2 ** 20


def index_path(path: str | Path) -> Path:
    """``NAME.safetensors`` -> ``NAME.safetensors.index.json``."""
    path = Path(path)
    return path.with_name(path.name + ".index.json")


def _shard_name(path: Path, i: int, n: int) -> str:
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return f"{stem}-{i:05d}-of-{n:05d}.safetensors"


def split_file(path: str | Path, out_dir: str | Path | None = None, max_bytes: int = MAX_SHARD_BYTES) -> Path:
    """Split the safetensors file ``path`` into shards of at most ``max_bytes`` of tensor data
    each (a tensor larger than that gets a shard of its own) in ``out_dir`` (default: next to
    it). Returns the index path. Shards are written first and the index last, each atomically,
    so a crash never leaves an index that names missing shards; then shards of an earlier split
    that the new index does not name are removed."""
    path = Path(path)
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    tensors = load_file(str(path))
    groups: list[list[str]] = [[]]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    target = out_dir / path.name
    weight_map = {}
    for i, names in enumerate(groups, 1):
        shard = _shard_name(target, i, len(groups))
        with atomic_path(out_dir / shard) as tmp:
            save_file({k: tensors[k].contiguous() for k in names}, str(tmp), metadata=metadata)
        weight_map.update({k: shard for k in names})
    index = {"metadata": metadata, "weight_map": weight_map}
    idx = index_path(target)
    with atomic_path(idx) as tmp:
        tmp.write_text(json.dumps(index, indent=1))
    stem = _shard_name(target, 1, 1).split("-00001-of-")[0]
    for old in out_dir.glob(f"{stem}-*-of-*.safetensors"):  # shards of an earlier split with another count
        if old.name not in weight_map.values():
            old.unlink()
    return idx


def exists(path: str | Path) -> bool:
    """Whether ``path`` or its sharded form (an index next to it) exists."""
    return Path(path).is_file() or index_path(path).is_file()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of ``path``, or of its shard index, without reading any tensor."""
    path = Path(path)
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    idx = index_path(path)
    if not idx.is_file():
        raise UserError(f"no checkpoint at {path} (nor a sharded one, {idx.name})")
    try:
        return dict(json.loads(idx.read_text()).get("metadata") or {})
    except (ValueError, AttributeError):
        raise UserError(f"{idx} is not a shard index (JSON with a weight_map); remove it or restore it from git") from None


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of ``path``, or of its shards when only the index is there."""
    path = Path(path)
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    idx = index_path(path)
    if not idx.is_file():
        raise UserError(f"no checkpoint at {path} (nor a sharded one, {idx.name})")
    try:
        index = json.loads(idx.read_text())
        weight_map = index["weight_map"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{idx} is not a shard index (JSON with a weight_map); remove it or restore it from git") from None
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        file = idx.parent / shard
        if not file.is_file():
            raise UserError(f"{idx.name} names the shard {shard}, which is missing; restore it from git")
        part = load_file(str(file))
        tensors.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
    missing = [k for k in weight_map if k not in tensors]
    if missing:
        raise UserError(f"shards of {path.name} lack {len(missing)} tensors named in the index (e.g. {missing[0]})")
    return tensors, dict(index.get("metadata") or {})
