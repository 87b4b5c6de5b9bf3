"""``python -m fercore default``: build the embedded default run (phantom, train, record, analyse)."""

from __future__ import annotations

import argparse

NAME = "default"
HELP = "build the embedded default run: phantom faces, train, record, analyse (each stage cached)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from fercore.cli._progress import tqdm_progress
    from fercore.pipeline import build_default

    with tqdm_progress(disable=args.quiet) as progress:
        run_dir = build_default(progress=progress)
    print(run_dir)
    return 0
