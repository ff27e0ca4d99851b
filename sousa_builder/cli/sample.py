"""`sousa-builder sample OUT`: write a small SOUSA-layout dataset (real FLAC and MIDI)."""

from __future__ import annotations

import argparse
from typing import Any

from .parser import positive

DEFAULT_PROFILES = 12  # `sample.DEFAULT_PROFILES` (a test checks the two agree; that module imports numpy)

EXAMPLES = """examples:
  sousa-builder sample ./demo-data
  sousa-builder sample ./demo-data --profiles 24 --rudiments 6 --tempos 2 --augmentations 5 --seed 11
  sousa-builder sample ./broken --pitched            # piano-like renders, for validate --audio
"""


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the `sample` subcommand to `commands` (the top-level parser's subparsers).

    Args:
        commands (`argparse._SubParsersAction`):
            Where the subcommand goes.
        common (`argparse.ArgumentParser`):
            The options every subcommand takes (`--debug`).
    """
    sample = commands.add_parser(
        "sample",
        parents=[common],
        help="write a small SOUSA-layout dataset (real FLAC and MIDI)",
        description="Write a small dataset in the SOUSA generator's layout: real FLAC and MIDI, consistent labels,\n"
        "PROFILES x RUDIMENTS x TEMPOS x AUGMENTATIONS samples.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sample.add_argument("out", metavar="OUT", help="folder to write (must not exist, or be empty)")
    sample.add_argument(
        "--profiles",
        type=positive,
        default=DEFAULT_PROFILES,
        help=f"player profiles, each of one skill tier and in one split (default {DEFAULT_PROFILES}: every split "
        f"holds every tier; fewer cannot, and below 4 there is no validation split)",
    )
    sample.add_argument("--rudiments", type=positive, default=3, help="rudiments per profile (1-6, default 3)")
    sample.add_argument(
        "--augmentations", type=positive, default=2, help="audio variants per performance (1-5, default 2)"
    )
    sample.add_argument("--tempos", type=positive, default=1, help="tempos per rudiment (default 1)")
    sample.add_argument(
        "--seed", type=int, default=0, help="random seed: the same seed writes the same dataset (default 0)"
    )
    sample.add_argument(
        "--flat",
        action="store_true",
        help="older media layout audio/<id>.flac, midi/<id>.mid (default: audio/<slug>/<id>.flac, as today)",
    )
    sample.add_argument("--overwrite", action="store_true", help="replace OUT if it already holds files")
    sample.add_argument(
        "--pitched", action="store_true", help="render harmonic tones at the MIDI pitch instead of drum hits"
    )
    sample.add_argument(
        "--shift-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="play the audio MS later than the MIDI (< 0: earlier; default 0)",
    )
    sample.set_defaults(run=run, usage_error=sample.error)


def run(args: argparse.Namespace) -> None:
    """Write the sample dataset `args` describe, and say where.

    Args:
        args (`argparse.Namespace`):
            The parsed command line.

    Raises:
        `SystemExit`: a usage error (a count above what the sample maker has).
        [`~errors.OutputExistsError`]:
            OUT holds something else.
    """
    from ..sample import PRESETS, RUDIMENTS, TEMPOS, make_sample

    for option, value, most in (("--rudiments", args.rudiments, len(RUDIMENTS)), ("--augmentations", args.augmentations,
                                len(PRESETS)), ("--tempos", args.tempos, len(TEMPOS))):  # fmt: skip
        if value > most:
            args.usage_error(f"{option} must be 1-{most}, got {value}")
    out = make_sample(
        args.out,
        profiles=args.profiles,
        rudiments=args.rudiments,
        augmentations=args.augmentations,
        tempos=args.tempos,
        seed=args.seed,
        flat=args.flat,
        overwrite=args.overwrite,
        pitched=args.pitched,
        shift_ms=args.shift_ms,
    )
    print(f"wrote a sample SOUSA dataset to {out}")
