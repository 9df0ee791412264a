"""``fastmri-diffmask run-fastmri SCRIPT.py ARGS...``: run an unmodified fastMRI script with
learned masks.

fastMRI's example scripts (``fastmri_examples/varnet/train_varnet_demo.py``, ...) import
``create_mask_for_mask_type`` at import time and declare ``--mask_type`` with argparse
``choices``. This command runs such a script in this process (:mod:`runpy`, as
``python SCRIPT.py ARGS...`` would) with three changes, all undone afterwards:

1. ``--learned_mask FILE`` and ``--learned_mask_mode fixed|sampled`` are removed from the
   script's arguments and passed on through ``$FASTMRI_DIFFMASK_MASK`` /
   ``$FASTMRI_DIFFMASK_MASK_MODE`` (the mask file is validated first);
2. ``fastmri.data.subsample.create_mask_for_mask_type`` (and every already imported module's
   reference to it) is replaced by
   :func:`fastmri_diffmask.masks.fastmri_adapter.create_mask_for_mask_type`, which knows
   ``learned_diffusion`` and hands every other name to fastMRI's factory unchanged;
3. argparse's ``add_argument`` adds ``learned_diffusion`` to the ``choices`` of any
   ``--mask_type`` argument.

Example::

    fastmri-diffmask run-fastmri fastMRI/fastmri_examples/varnet/train_varnet_demo.py \\
        --mask_type learned_diffusion --learned_mask mask.safetensors --accelerations 8 ...
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import runpy
import sys
from pathlib import Path
from typing import Iterator

from ..errors import UserError

#: Our own options, stripped from the script's arguments: option -> environment variable.
OWN_OPTIONS = {
    "--learned_mask": "FASTMRI_DIFFMASK_MASK",
    "--learned_mask_mode": "FASTMRI_DIFFMASK_MASK_MODE",
}
_ALIASES = {"--learned-mask": "--learned_mask", "--learned-mask-mode": "--learned_mask_mode"}
_MASK_TYPE_OPTIONS = ("--mask_type", "--mask-type")
_LIGHTNING_HINT = "install the lightning extra: pip install 'fastmri-diffmask[lightning]'"
_LIGHTNING_IMPORT = re.compile(r"^\s*(import|from)\s+(pytorch_lightning|lightning|fastmri\.pl_modules)\b", re.M)
# modules the Lightning stack of fastMRI needs, and what to install for each
_LIGHTNING_MODULES = {
    "pytorch_lightning": _LIGHTNING_HINT,
    "lightning_fabric": _LIGHTNING_HINT,
    "torchmetrics": _LIGHTNING_HINT,
    "tensorboardX": _LIGHTNING_HINT,
    "pkg_resources": "pytorch-lightning 1.x imports pkg_resources: pip install 'setuptools<81' (or " + _LIGHTNING_HINT + ")",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run-fastmri",
        help="run an unmodified fastMRI script with --mask_type learned_diffusion",
        description=(
            "Run a fastMRI script (e.g. fastmri_examples/varnet/train_varnet_demo.py) in-process with "
            "'--mask_type learned_diffusion --learned_mask FILE [--learned_mask_mode fixed|sampled]' accepted; "
            "all other arguments go to the script unchanged."
        ),
    )
    p.add_argument("--learned_mask", "--learned-mask", dest="learned_mask", default=None,
                   help="mask file for --mask_type learned_diffusion (may also follow SCRIPT)")
    p.add_argument("--learned_mask_mode", "--learned-mask-mode", dest="learned_mask_mode", default=None,
                   choices=("fixed", "sampled"), help="fixed (the file's mask) or sampled (default fixed)")
    p.add_argument("script", help="the fastMRI script to run")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=run)


def split_own_options(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Remove ``--learned_mask[=]F`` and ``--learned_mask_mode[=]M`` from ``argv``.

    Returns the remaining arguments and ``{option: value}``. Arguments after ``--`` are left
    alone. A flag without a value is a :class:`UserError`.
    """
    rest, found = [], {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        name, eq, value = arg.partition("=")
        name = _ALIASES.get(name, name)
        if name in OWN_OPTIONS:
            if not eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise UserError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            found[name] = value
        else:
            rest.append(arg)
        i += 1
    return rest, found


def _option_value(argv: list[str], names) -> str | None:
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        name, eq, v = arg.partition("=")
        if name in names:
            value = v if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


def check_lightning(script: Path) -> None:
    """One-line :class:`UserError` when ``script`` imports Lightning and a usable
    ``pytorch_lightning`` (1.x, as fastMRI 0.3.0 needs) is not installed."""
    try:
        text = script.read_text(errors="replace")
    except OSError as e:
        raise UserError(f"cannot read {script}: {e.strerror}") from None
    if not _LIGHTNING_IMPORT.search(text):
        return
    if importlib.util.find_spec("pytorch_lightning") is None:
        raise UserError(f"{script.name} needs pytorch_lightning, which is not installed; {_LIGHTNING_HINT}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("pytorch-lightning")
    except PackageNotFoundError:
        return
    if int(v.split(".")[0]) >= 2:
        raise UserError(f"fastMRI 0.3.0's Lightning code needs pytorch-lightning<2, found {v}; {_LIGHTNING_HINT}")
    import numpy as np

    if int(np.__version__.split(".")[0]) >= 2:  # PL 1.x's ModelCheckpoint uses np.Inf
        raise UserError(
            f"pytorch-lightning {v} does not work with numpy {np.__version__} (it uses np.Inf, removed in "
            "numpy 2); in that environment run: pip install 'numpy<2' 'pandas<3'"
        )


@contextlib.contextmanager
def patch_fastmri(learned_mask: str | None = None, mode: str | None = None) -> Iterator[None]:
    """Context manager installing ``learned_diffusion`` into fastMRI for the duration.

    Replaces ``fastmri.data.subsample.create_mask_for_mask_type`` and every already imported
    module's reference to it by this package's factory, adds ``learned_diffusion`` to the
    ``choices`` of any ``--mask_type`` argparse argument declared meanwhile, and sets
    ``$FASTMRI_DIFFMASK_MASK`` / ``$FASTMRI_DIFFMASK_MASK_MODE`` when given. Everything is
    restored on exit.
    """
    import fastmri.data.subsample as subsample

    from ..masks import fastmri_adapter as adapter

    original = subsample.create_mask_for_mask_type
    ours = adapter.create_mask_for_mask_type
    patched_modules = []
    for mod in list(sys.modules.values()):
        try:
            if getattr(mod, "create_mask_for_mask_type", None) is original:
                patched_modules.append(mod)
        except Exception:  # exotic modules with failing __getattr__
            continue
    orig_add_argument = argparse._ActionsContainer.add_argument

    def add_argument(self, *args, **kwargs):
        if any(a in _MASK_TYPE_OPTIONS for a in args) and kwargs.get("choices") is not None:
            choices = tuple(kwargs["choices"])
            if adapter.MASK_TYPE not in choices:
                kwargs["choices"] = choices + (adapter.MASK_TYPE,)
        return orig_add_argument(self, *args, **kwargs)

    env = {adapter.ENV_MASK: learned_mask, adapter.ENV_MASK_MODE: mode}
    saved_env = {k: os.environ.get(k) for k in env}
    try:
        for mod in patched_modules:
            mod.create_mask_for_mask_type = ours
        argparse._ActionsContainer.add_argument = add_argument
        for k, v in env.items():
            if v is not None:
                os.environ[k] = str(v)
        yield
    finally:
        argparse._ActionsContainer.add_argument = orig_add_argument
        for mod in patched_modules:
            mod.create_mask_for_mask_type = original
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_script(script: str | os.PathLike, argv: list[str]) -> int:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *argv]``; return its exit code.

    The script's directory goes first on ``sys.path`` (as ``python SCRIPT`` does); ``sys.argv``
    and ``sys.path`` are restored afterwards. A missing Lightning module becomes a one-line
    :class:`UserError`.
    """
    script = Path(script)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return int(e.code or 0)
        print(e.code, file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in _LIGHTNING_MODULES:
            raise UserError(f"{script.name} needs {top}, which is not installed; {_LIGHTNING_MODULES[top]}") from None
        raise
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path
    return 0


def run(args) -> int:
    script = Path(args.script)
    if not script.is_file():
        raise UserError(
            f"fastMRI script {script} does not exist; pass the path of a script such as "
            "fastmri_examples/varnet/train_varnet_demo.py from a fastMRI clone"
        )
    from ..masks.fastmri_adapter import ENV_MASK, MASK_TYPE
    from ..masks.file import load_mask_file

    script_args, own = split_own_options(list(args.script_args))
    learned_mask = own.get("--learned_mask", args.learned_mask)
    mode = own.get("--learned_mask_mode", args.learned_mask_mode)
    if mode is not None and mode not in ("fixed", "sampled"):
        raise UserError(f"--learned_mask_mode {mode!r} is not fixed or sampled")
    mask_type = _option_value(script_args, _MASK_TYPE_OPTIONS)
    if learned_mask is not None:
        load_mask_file(learned_mask)  # validate before the script spends any time
    elif mask_type == MASK_TYPE and not os.environ.get(ENV_MASK):
        raise UserError(f"--mask_type {MASK_TYPE} needs --learned_mask FILE (or ${ENV_MASK})")
    check_lightning(script)
    with patch_fastmri(learned_mask=learned_mask, mode=mode):
        return run_script(script, script_args)
