"""``python -m fercore COMMAND``: one module per command in this package.

Each command module defines ``NAME`` (the command word), ``HELP`` (one line), optionally
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``; :data:`COMMANDS` lists them in
the order of the data path, and ``--help`` shows them in that order.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: The command modules, in the order of the data path.
COMMANDS = ("phantom", "phantom_seq", "import_", "train", "import_model", "sequence", "evaluate", "record", "project", "analyze", "null", "summary", "runs",
            "default")


def _commands():
    return [importlib.import_module(f"{__name__}.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fercore",
        description="Train facial-expression CNNs, record what their filters respond to, and relate filters to FACS action units.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`... | head -1`): stop quietly. stdout points at devnull so the
        # interpreter's final flush of what is still buffered cannot fail again.
        _stdout_to_devnull()
        return 1
    except (ValueError, FileNotFoundError) as e:
        # User errors (bad file, bad argument) are reported in one line, without a traceback.
        print(f"fercore {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fercore {args.command}: interrupted; finished stages are cached and resume", file=sys.stderr)
        return 130


def _stdout_to_devnull() -> None:
    """Point the process's stdout (file descriptor and ``sys.stdout``) at the null device, as
    Python's documentation advises after a BrokenPipeError (``signal`` module, "Note on SIGPIPE")."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # sys.stdout replaced by an object without a descriptor
        sys.stdout = open(os.devnull, "w")  # kept open until exit
    finally:
        os.close(devnull)
