"""``fastmri-diffmask``: the command-line entry point.

Each subcommand lives in its own module under ``fastmri_diffmask.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments. Bad input anywhere raises :class:`~fastmri_diffmask.errors.UserError`; this module turns
it into one line on stderr and exit code 2; progress bars still on screen are closed first, so
that line starts a line of its own instead of trailing a bar.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UserError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = [
    "make_data", "recon", "train_prior", "learn_mask", "compare", "demo",
    "convert_ismrmrd", "export_sequence", "run_fastmri",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastmri-diffmask", description=__doc__.splitlines()[0].strip("`: "))
    from .. import __version__

    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(name):
                continue  # subcommand not installed in this build
            raise
        module.register(sub)
    return parser


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--device auto|cpu|cuda`` flag every computing subcommand takes."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")


def close_progress_bars() -> None:
    """Close every live tqdm bar (innermost first), ending its line, so the next message printed
    to stderr starts on a line of its own. A bar left open by an exception is otherwise closed
    only when it is garbage-collected, after the error line, which it then overwrites or trails."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return
    bars = sorted(getattr(tqdm, "_instances", ()), key=lambda b: -abs(getattr(b, "pos", 0)))
    for bar in bars:
        try:
            bar.close()
        except Exception:  # pragma: no cover - a half-built bar; nothing to print then
            pass


def _report(message: str) -> None:
    """Print ``message`` to stderr as exactly one line, after closing any progress bar."""
    message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    close_progress_bars()
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except UserError as e:
        _report(f"fastmri-diffmask {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
