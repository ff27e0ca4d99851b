"""`sousa-builder validate`: check a SOUSA source directory, or a prepared folder (`--prepared`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import PreparedFolderError, ReportPathError, SourceNotFoundError
from ..layout import CONFIGS, README
from .parser import non_negative, positive, share

EXAMPLES = """examples:
  sousa-builder validate output/dataset --num-proc 4 --json report.json
  sousa-builder validate output/dataset --sample 500 --strict
  sousa-builder validate --prepared build/sousa --source output/dataset --sample 500
  sousa-builder validate output/dataset --audio --sample 1000 --num-proc 8
  sousa-builder validate --prepared build/sousa --audio --max-flagged-share 0.05
"""
# validate options that set `AudioSettings` fields of the same name.
AUDIO_OPTIONS = ("timbre_threshold", "partial_threshold", "max_lag_ms", "min_correlation", "max_flagged_share")
SAMPLES_FILE = "labels/samples.parquet"  # `source.LABEL_FILES["samples"]` (a test checks the two agree)


class AudioDefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Fills `{audio.NAME:g}` in a help text with the default of `validate.audio`, imported only when help is shown
    (it imports numpy, pyarrow and the validate package)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and "{audio." in text:
            from ..validate import audio

            text = text.format(audio=audio)
        return text


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the `validate` subcommand to `commands` (the top-level parser's subparsers).

    Args:
        commands (`argparse._SubParsersAction`):
            Where the subcommand goes.
        common (`argparse.ArgumentParser`):
            The options every subcommand takes (`--debug`).
    """
    check = commands.add_parser(
        "validate",
        parents=[common],
        help="check a SOUSA directory or a prepared folder; exit 1 if anything is wrong",
        description="Check a SOUSA source directory (DATA_DIR) or a prepared folder (--prepared OUT).\n"
        "Exit 0 when every check passes, 1 when any fails (with --strict: or warns), 2 for usage errors.",
        epilog=EXAMPLES,
        formatter_class=AudioDefaultsFormatter,
    )
    check.add_argument("data_dir", nargs="?", metavar="DATA_DIR", help="the SOUSA directory to check")
    check.add_argument("--prepared", metavar="OUT", help="check this prepared (Hub-layout) folder or URL instead")
    check.add_argument("--source", metavar="DATA_DIR", help="with --prepared: the SOUSA directory it was made from")
    check.add_argument("--json", metavar="REPORT.json", help="also write the full report as JSON")
    check.add_argument("--strict", action="store_true", help="warnings fail too")
    check.add_argument(
        "--num-proc", type=positive, default=None, metavar="N", help="processes for the media checks (default 1)"
    )
    check.add_argument(
        "--sample", type=positive, metavar="K",
        help="check the media of K random samples and load K rows a split (default: all)",
    )  # fmt: skip
    check.add_argument(
        "--seed", type=int, default=None, help="seed for --sample (default: a random one, which the report gives)"
    )
    sound = check.add_argument_group(
        "audio checks",
        "is each FLAC a drum (pitch evidence at its MIDI's pitches), does it follow its MIDI (onsets fitted by\n"
        "its notes)? "
        "Each check fails when more than --max-flagged-share of the files are flagged (--strict: any).",
    )
    sound.add_argument("--audio", action="store_true", help="run the audio checks (on the --sample files if given)")
    sound.add_argument(
        "--timbre-threshold", type=float, metavar="DB",
        help="flag harmonic salience above DB, for files without MIDI (default {audio.TIMBRE_THRESHOLD_DB:g})",
    )  # fmt: skip
    sound.add_argument(
        "--partial-threshold", type=float, metavar="S",
        help="flag pitch evidence (stability + note salience) above S (default {audio.PARTIAL_STABILITY_THRESHOLD:g})",
    )  # fmt: skip
    sound.add_argument(
        "--max-lag-ms", type=non_negative, metavar="MS",
        help="flag audio more than MS off its MIDI (default {audio.MAX_LAG_MS:g})",
    )  # fmt: skip
    sound.add_argument(
        "--min-correlation", type=float, metavar="R",
        help="flag onset correlation below R (default {audio.MIN_CORRELATION:g})",
    )  # fmt: skip
    sound.add_argument(
        "--max-flagged-share", type=share, metavar="FRACTION",
        help="fail when more than this share of the files is flagged (default {audio.MAX_FLAGGED_SHARE:g})",
    )  # fmt: skip
    check.set_defaults(run=run, usage_error=check.error)


def run(args: argparse.Namespace) -> int:
    """Run the checks `args` ask for and print the report.

    Args:
        args (`argparse.Namespace`):
            The parsed command line.

    Returns:
        `int`: 0 when every check passes, 1 when any fails (with `--strict`: or warns).

    Raises:
        `SystemExit`: a usage error (options that do not go together, a folder of the other kind).
        [`~errors.SourceNotFoundError`], [`~errors.PreparedFolderError`]:
            A folder given does not exist.
    """
    _check_arguments(args)
    from ..storage import is_url

    for option, value in (("DATA_DIR", args.data_dir), ("--prepared", args.prepared), ("--source", args.source)):
        if value is not None and not is_url(value) and not Path(value).is_dir():
            error = PreparedFolderError if option == "--prepared" else SourceNotFoundError
            raise error(f"{option} {value}: no such directory")
    if args.json and not Path(args.json).absolute().parent.is_dir():  # known now, not after the checks ran
        raise ReportPathError(f"--json {args.json}: no such directory {Path(args.json).absolute().parent}")
    if args.json and Path(args.json).is_dir():
        raise ReportPathError(f"--json {args.json}: is a directory; give a file name")
    if args.data_dir is not None and _looks_prepared(Path(args.data_dir)):
        args.usage_error(
            f"DATA_DIR {args.data_dir} looks like a prepared folder (a README.md and config shards, no "
            f"{SAMPLES_FILE}): use --prepared {args.data_dir}"
        )
    if args.prepared is not None and not is_url(args.prepared) and (Path(args.prepared) / SAMPLES_FILE).is_file():
        args.usage_error(
            f"--prepared {args.prepared} looks like a SOUSA source directory (it holds {SAMPLES_FILE}): "
            f"check it without --prepared (sousa-builder validate {args.prepared}), or give it as --source"
        )
    from ..validate import validate_prepared, validate_source
    from ..validate.audio import AudioSettings

    thresholds = {name: getattr(args, name) for name in AUDIO_OPTIONS if getattr(args, name) is not None}
    options = {"num_proc": args.num_proc, "sample": args.sample, "seed": args.seed}
    options["audio"] = AudioSettings(**thresholds) if args.audio else None
    if args.prepared is not None:
        report = validate_prepared(args.prepared, source=args.source, **options)
    else:
        report = validate_source(args.data_dir, **options)
    if args.json:
        Path(args.json).write_text(report.to_json(strict=args.strict), encoding="utf-8")
    print(report.summary(strict=args.strict))
    return 0 if report.ok(strict=args.strict) else 1


def _check_arguments(args: argparse.Namespace) -> None:
    """Usage errors that the parser cannot see: options that go together, or not."""
    from ..storage import is_url

    if (args.data_dir is None) == (args.prepared is None):
        args.usage_error("give either DATA_DIR or --prepared OUT")
    if args.source is not None and args.prepared is None:
        args.usage_error("--source goes with --prepared")
    for option, value in (("DATA_DIR", args.data_dir), ("--source", args.source)):
        if value is not None and is_url(value):
            args.usage_error(f"{option} {value}: must be a local folder (only --prepared may be a URL)")
    thresholds = [name for name in AUDIO_OPTIONS if getattr(args, name) is not None]
    if thresholds and not args.audio:
        args.usage_error(f"--{thresholds[0].replace('_', '-')} goes with --audio")


def _looks_prepared(folder: Path) -> bool:
    """Whether `folder` is a `prepare` output rather than a SOUSA source: a README and config shards, no labels."""
    if (folder / SAMPLES_FILE).is_file() or not (folder / README).is_file():
        return False
    return any(next((folder / name).glob("*.parquet"), None) for name in CONFIGS)
