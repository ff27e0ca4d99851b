"""The `sousa-builder` command: a thin layer over the package, one function per subcommand."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError

from . import __version__
from .builder import config_names
from .errors import PublishNotConfirmedError, SourceFormatError, SousaError
from .output import refuse_overlap
from .prepare import ENGINES, README, PrepareResult, prepare
from .publish import PublishPlan, is_connection_error, publish
from .sample import PRESETS, RUDIMENTS, TEMPOS, make_sample
from .source import LABEL_FILES, resolve_data_dir
from .storage import is_url
from .validate import validate_prepared, validate_source
from .validate.audio import (
    MAX_FLAGGED_SHARE,
    MAX_LAG_MS,
    MIN_CORRELATION,
    PARTIAL_STABILITY_THRESHOLD,
    TIMBRE_THRESHOLD_DB,
    AudioSettings,
)

logger = logging.getLogger("sousa_builder")
# validate options that set `AudioSettings` fields of the same name.
AUDIO_OPTIONS = ("timbre_threshold", "partial_threshold", "max_lag_ms", "min_correlation", "max_flagged_share")

EXAMPLES = """examples, one per command (COMMAND --help: its options and more examples):
  sousa-builder sample ./demo-data --profiles 4 --seed 1
  sousa-builder validate ./demo-data
  sousa-builder prepare ./demo-data --out ./build/sousa
  sousa-builder validate --prepared ./build/sousa --source ./demo-data
  sousa-builder publish user/sousa --prepared ./build/sousa
"""
SAMPLE_EXAMPLES = """examples:
  sousa-builder sample ./demo-data
  sousa-builder sample ./demo-data --profiles 8 --rudiments 6 --tempos 2 --augmentations 5 --seed 11
  sousa-builder sample ./broken --pitched            # piano-like renders, for validate --audio
"""
PREPARE_EXAMPLES = """examples:
  sousa-builder prepare ./demo-data --out ./build/sousa
  sousa-builder prepare output/dataset --out build/sousa --configs midi_only labels_only --num-proc 2
  sousa-builder prepare output/dataset --out build/sousa --max-shard-size 200MB
  sousa-builder prepare output/dataset --out build/sousa --engine ray --ray-address auto  # the "ray" extra
  sousa-builder prepare s3://bucket/sousa-raw --out s3://bucket/sousa --num-proc 8  # the "s3" extra (s3fs)
"""
MAX_SHARD_SIZE_HELP = (
    "largest shard: 500MB, 2GB or a number of bytes (default 500MB). Each split is cut into shards of "
    "equal row counts (within one row), as few as keep each under SIZE of Arrow data (the labels plus the "
    "media bytes), with row groups of 100 rows for audio and midi_only and 1000 for labels_only"
)
PUBLISH_EXAMPLES = """examples (the token comes from $HF_TOKEN or `hf auth login`, never from the command line):
  python -m sousa_builder.publish user/sousa --data-dir output/dataset
  python -m sousa_builder.publish user/sousa --prepared build/sousa --yes
  python -m sousa_builder.publish user/sousa --data-dir output/dataset --dry-run build/plan
  python -m sousa_builder.publish user/sousa --prepared build/sousa --configs labels_only --create-pr
"""
VALIDATE_EXAMPLES = """examples:
  sousa-builder validate output/dataset --num-proc 4 --json report.json
  sousa-builder validate output/dataset --sample 500 --strict
  sousa-builder validate --prepared build/sousa --source output/dataset --sample 500
  sousa-builder validate output/dataset --audio --sample 1000 --num-proc 8
  sousa-builder validate --prepared build/sousa --audio --max-flagged-share 0.05
"""


def _size(text: str) -> int:
    """Bytes from "500MB", "2GB" (datasets' own parser) or a plain number of bytes."""
    if text.isdigit():
        return int(text)
    try:
        return convert_file_size_to_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 500MB, 2GB or 1000000") from err


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction within 0-1 (0.02 is 2%), got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sousa-builder",
        description="Turn a SOUSA output directory into a Hugging Face dataset: prepare it as Parquet shards\n"
        "with a dataset card, check it, publish it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: SOUSA_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sample = commands.add_parser(
        "sample",
        help="write a small SOUSA-layout dataset (real FLAC and MIDI)",
        description="Write a small dataset in the SOUSA generator's layout: real FLAC and MIDI, consistent labels,\n"
        "PROFILES x RUDIMENTS x TEMPOS x AUGMENTATIONS samples.",
        epilog=SAMPLE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sample.add_argument("out", metavar="OUT", help="folder to write (must not exist, or be empty)")
    sample.add_argument(
        "--profiles", type=_positive, default=3, help="player profiles (default 3: no validation split; 4 has one)"
    )
    sample.add_argument("--rudiments", type=_positive, default=3, help="rudiments per profile (1-6, default 3)")
    sample.add_argument(
        "--augmentations", type=_positive, default=2, help="audio variants per performance (1-5, default 2)"
    )
    sample.add_argument("--tempos", type=_positive, default=1, help="tempos per rudiment (default 1)")
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
    sample.set_defaults(run=_run_sample, usage_error=sample.error)

    prep = commands.add_parser(
        "prepare",
        help="build the configs to Parquet in the Hub layout, with a README",
        description="Build the configs (audio, midi_only, labels_only) of a SOUSA output directory as Parquet\n"
        "shards in the Hub layout, with a README (dataset card) that datasets.load_dataset(OUT, CONFIG) reads.",
        epilog=PREPARE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prep.add_argument(
        "data_dir",
        metavar="DATA_DIR",
        help="the SOUSA output directory (the generator's output/dataset), or its URL "
        "(s3://, gs://, ...: anything fsspec opens, with its backend installed)",
    )
    prep.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="folder or URL to write; an earlier output there is replaced when done",
    )
    prep.add_argument("--configs", nargs="+", choices=config_names(), help="configs to build (default: all)")
    prep.add_argument(
        "--num-proc", type=_positive, default=None, metavar="N", help="processes writing shards (default 1)"
    )
    prep.add_argument("--max-shard-size", type=_size, default=None, metavar="SIZE", help=MAX_SHARD_SIZE_HELP)
    prep.add_argument(
        "--engine", choices=ENGINES, default="local", help="who writes the shards: processes of this machine "
        "(local, the default) or Ray tasks (ray; needs the ray extra)"
    )  # fmt: skip
    prep.add_argument(
        "--ray-address", metavar="ADDRESS", help="with --engine ray: 'auto' joins the running Ray cluster, HOST:PORT "
        "the one whose head is there (default: start Ray on this machine, with --num-proc CPUs)"
    )  # fmt: skip
    prep.set_defaults(run=_run_prepare, usage_error=prep.error)

    pub = commands.add_parser(
        "publish", help="push prepared shards and the card to a Hub dataset repo, in one commit",
        description="Push a prepared folder (or prepare DATA_DIR first) to a Hub dataset repo in one commit:\n"
        "validated first, resumable, and nothing sent when the repo already holds these files.",
        epilog=PUBLISH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    pub.add_argument("repo_id", metavar="REPO_ID", help="the dataset repo, e.g. user/sousa")
    what = pub.add_mutually_exclusive_group(required=True)
    what.add_argument("--data-dir", metavar="DATA_DIR", help="a SOUSA output directory: prepare it, then publish")
    what.add_argument("--prepared", metavar="OUT", help="a folder (or URL) made by `sousa-builder prepare`")
    pub.add_argument("--dry-run", metavar="DIR", help="send nothing: write the tree that would be pushed to DIR")
    pub.add_argument("--configs", nargs="+", choices=config_names(), help="configs to push (default: all)")
    pub.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    pub.add_argument("--revision", metavar="BRANCH", help="branch to commit to (must exist; default main)")
    pub.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to the branch")
    pub.add_argument("--commit-message", metavar="TEXT", help="default: says which configs and how many rows")
    pub.add_argument(
        "--num-proc", type=_positive, default=None, metavar="N", help="with --data-dir: processes writing shards "
        "(default 1)"
    )  # fmt: skip
    pub.add_argument(
        "--max-shard-size", type=_size, default=None, metavar="SIZE", help=f"with --data-dir: {MAX_SHARD_SIZE_HELP}"
    )
    pub.add_argument("--yes", action="store_true", help="do not ask before publishing (needed without a terminal)")
    pub.set_defaults(run=_run_publish, usage_error=pub.error)

    check = commands.add_parser(
        "validate",
        help="check a SOUSA directory or a prepared folder; exit 1 if anything is wrong",
        description="Check a SOUSA source directory (DATA_DIR) or a prepared folder (--prepared OUT).\n"
        "Exit 0 when every check passes, 1 when any fails (with --strict: or warns), 2 for usage errors.",
        epilog=VALIDATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("data_dir", nargs="?", metavar="DATA_DIR", help="the SOUSA directory to check")
    check.add_argument("--prepared", metavar="OUT", help="check this prepared (Hub-layout) folder or URL instead")
    check.add_argument("--source", metavar="DATA_DIR", help="with --prepared: the SOUSA directory it was made from")
    check.add_argument("--json", metavar="REPORT.json", help="also write the full report as JSON")
    check.add_argument("--strict", action="store_true", help="warnings fail too")
    check.add_argument(
        "--num-proc", type=_positive, default=None, metavar="N", help="processes for the media checks (default 1)"
    )
    check.add_argument(
        "--sample",
        type=_positive,
        metavar="K",
        help="check the media of K random samples and load K rows a split (default: all)",
    )
    check.add_argument(
        "--seed", type=int, default=None, help="seed for --sample (default: a random one, which the JSON report gives)"
    )
    sound = check.add_argument_group(
        "audio checks",
        "is each FLAC a drum (pitch evidence at its MIDI's pitches), does it follow its MIDI (onsets fitted by\n"
        "its notes)? "
        "Each check fails when more than --max-flagged-share of the files are flagged (--strict: any).",
    )
    sound.add_argument("--audio", action="store_true", help="run the audio checks (on the --sample files if given)")
    sound.add_argument(
        "--timbre-threshold",
        type=float,
        metavar="DB",
        help=f"flag harmonic salience above DB, for files without MIDI (default {TIMBRE_THRESHOLD_DB:g})",
    )
    sound.add_argument(
        "--partial-threshold",
        type=float,
        metavar="S",
        help=f"flag pitch evidence (stability + note salience) above S (default {PARTIAL_STABILITY_THRESHOLD:g})",
    )
    sound.add_argument(
        "--max-lag-ms",
        type=_non_negative,
        metavar="MS",
        help=f"flag audio more than MS off its MIDI (default {MAX_LAG_MS:g})",
    )
    sound.add_argument(
        "--min-correlation",
        type=float,
        metavar="R",
        help=f"flag onset correlation below R (default {MIN_CORRELATION:g})",
    )
    sound.add_argument(
        "--max-flagged-share",
        type=_share,
        metavar="FRACTION",
        help=f"fail when more than this share of the files is flagged (default {MAX_FLAGGED_SHARE:g})",
    )
    check.set_defaults(run=_run_validate, usage_error=check.error)
    return parser


def _run_sample(args: argparse.Namespace) -> None:
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


def _run_prepare(args: argparse.Namespace) -> None:
    if args.ray_address is not None and args.engine != "ray":
        args.usage_error("--ray-address needs --engine ray")
    data_dir = args.data_dir
    if not is_url(data_dir):
        data_dir = resolve_data_dir(data_dir, origin="the DATA_DIR argument")
    result = prepare(
        data_dir,
        args.out,
        configs=args.configs,
        num_proc=args.num_proc,
        max_shard_size=args.max_shard_size,
        engine=args.engine,
        ray_address=args.ray_address,
    )
    print(format_summary(result))


def _run_publish(args: argparse.Namespace) -> None:
    options = {
        "revision": args.revision, "private": args.private, "create_pr": args.create_pr,
        "commit_message": args.commit_message, "dry_run_dir": args.dry_run, "configs": args.configs,
        "confirm": None if args.yes or args.dry_run else _ask,
    }  # fmt: skip
    if args.prepared:
        result = publish(args.repo_id, args.prepared, **options)
    elif is_url(args.data_dir):
        args.usage_error(
            f"--data-dir {args.data_dir}: must be a local folder; prepare the URL first "
            "(sousa-builder prepare URL --out OUT), then publish --prepared OUT"
        )
    else:
        if args.dry_run:
            refuse_overlap(Path(args.dry_run), "--dry-run", Path(args.data_dir), "the SOUSA directory")
        _check_source(args.data_dir, args.num_proc)
        _remove_dead_work_folders()
        with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-") as work:
            data_dir = resolve_data_dir(args.data_dir, origin="--data-dir")
            prepared = prepare(data_dir, Path(work) / "prepared", configs=args.configs, num_proc=args.num_proc,
                               max_shard_size=args.max_shard_size)  # fmt: skip
            print(format_summary(prepared))
            result = publish(args.repo_id, prepared.out, **options)
    if options["confirm"] is None:  # else the plan was shown with the question
        print(result.plan.summary())
    if args.dry_run:
        print(f"dry run: wrote the tree that would be pushed to {args.dry_run}; nothing was sent")
    elif result.plan.is_empty:
        print(f"nothing to publish: {args.repo_id} already holds exactly these files")
    elif result.cancelled:
        print("not published")
    else:
        print(f"published: {result.pull_request_url or result.commit_url}")


WORK_PREFIX = "sousa-publish-"  # + the pid of the run: `publish --data-dir` prepares in a temporary folder


def _check_source(data_dir: str, num_proc: int | None) -> None:
    """Refuse a source that fails the checks of `sousa-builder validate` (labels and media; not --audio)."""
    report = validate_source(data_dir, num_proc=num_proc)
    report.refuse_if_failed(SourceFormatError, f"sousa-builder validate {data_dir}")


def _remove_dead_work_folders() -> None:
    """Remove the temporary folders of `publish --data-dir` runs that were killed (their pid is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*-*"):
        pid = folder.name[len(WORK_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ask(plan: PublishPlan) -> bool:
    print(plan.summary())
    if not sys.stdin.isatty():
        raise PublishNotConfirmedError("publishing needs a yes: pass --yes when there is no terminal to ask")
    return input(f"publish to {plan.repo_id}@{plan.revision}? [y/N] ").strip().lower() in ("y", "yes")


def _run_validate(args: argparse.Namespace) -> int:
    if (args.data_dir is None) == (args.prepared is None):
        args.usage_error("give either DATA_DIR or --prepared OUT")
    if args.source is not None and args.prepared is None:
        args.usage_error("--source goes with --prepared")
    for option, value in (("DATA_DIR", args.data_dir), ("--source", args.source)):
        if value is not None and is_url(value):
            args.usage_error(f"{option} {value}: must be a local folder (only --prepared may be a URL)")
    for option, value in (("DATA_DIR", args.data_dir), ("--prepared", args.prepared), ("--source", args.source)):
        if value is not None and not is_url(value) and not Path(value).is_dir():
            args.usage_error(f"{option} {value}: no such directory")
    if args.data_dir is not None and _looks_prepared(Path(args.data_dir)):
        args.usage_error(
            f"DATA_DIR {args.data_dir} looks like a prepared folder (a README.md and config shards, no "
            f"{LABEL_FILES['samples']}): use --prepared {args.data_dir}"
        )
    if (
        args.prepared is not None
        and not is_url(args.prepared)
        and (Path(args.prepared) / LABEL_FILES["samples"]).is_file()
    ):
        args.usage_error(
            f"--prepared {args.prepared} looks like a SOUSA source directory (it holds {LABEL_FILES['samples']}): "
            f"check it without --prepared (sousa-builder validate {args.prepared}), or give it as --source"
        )
    thresholds = {name: getattr(args, name) for name in AUDIO_OPTIONS if getattr(args, name) is not None}
    if thresholds and not args.audio:
        args.usage_error(f"--{next(iter(thresholds)).replace('_', '-')} goes with --audio")
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


def _looks_prepared(folder: Path) -> bool:
    """Whether `folder` is a `prepare` output rather than a SOUSA source: a README and config shards, no labels."""
    if (folder / LABEL_FILES["samples"]).is_file() or not (folder / README).is_file():
        return False
    return any(next((folder / name).glob("*.parquet"), None) for name in config_names())


def format_summary(result: PrepareResult) -> str:
    """A table of rows, shards and bytes per config and split."""
    lines = [f"{'config':<12} {'split':<11} {'rows':>8} {'shards':>7} {'bytes':>14}"]
    for name, splits in result.configs.items():
        for split, output in splits.items():
            lines.append(
                f"{name:<12} {split:<11} {output.num_examples:>8} {len(output.files):>7} {output.file_bytes:>14,}"
            )
    verb = "replaced" if result.replaced_previous else "wrote"
    lines.append(f"{verb} {result.out} in {result.seconds:.1f} s")
    return "\n".join(lines)


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every cleanup runs."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _interrupted(args: argparse.Namespace) -> str:
    """What an interrupted command leaves, in one line."""
    if args.command in ("prepare", "sample"):
        return f"{args.out} is unchanged"
    if args.command == "publish":
        return "the branch changes only by one complete commit: run again to finish (nothing is sent twice)"
    return "nothing was changed"


def describe_error(error: BaseException, args: argparse.Namespace) -> str:
    """One line for a user: what went wrong and, where it helps, what to do."""
    cause = error
    while not isinstance(cause, (SousaError, HfHubHTTPError)) and cause.__cause__ is not None:
        cause = cause.__cause__  # our own error, or the Hub's, behind a wrapper (datasets, the upload client)
    if isinstance(cause, HfHubHTTPError):
        return _hub_error(cause, args)
    if isinstance(cause, SousaError | ValueError):
        return str(cause)
    if _is_connection_error(cause):
        return f"cannot reach the Hub at {hf_constants.ENDPOINT} ({_first_line(cause)}); nothing was committed"
    if isinstance(cause, OSError) and cause.strerror:
        where = f"{cause.filename}: " if cause.filename else ""
        return f"{where}{cause.strerror.lower()}"
    return f"{type(cause).__name__}: {_first_line(cause)} (run with --debug for the traceback)"


def _hub_error(error: HfHubHTTPError, args: argparse.Namespace) -> str:
    status = error.response.status_code if error.response is not None else None
    repo = getattr(args, "repo_id", "the repo")
    if status == 401:
        return "the Hub refused the token (invalid, expired or revoked): set HF_TOKEN to a valid one"
    if status == 403:
        return f"this token cannot write to {repo}: use a token with write access to it"
    if status == 429:
        return "the Hub is limiting the rate of requests (429): wait, then run again (nothing is sent twice)"
    if status is not None and status >= 500:
        return f"the Hub answered {status} (a server error): run again later (nothing is sent twice)"
    return f"the Hub answered {status}: {_first_line(error)}"


def _is_connection_error(error: BaseException) -> bool:
    """A failure to reach a server: the built-in's, or httpx's / requests' (named alike, not imported here)."""
    return is_connection_error(error)


def _first_line(error: BaseException) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code (0 ok, 1 refused or failed, 2 usage, 130 / 143 interrupted)."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("SOUSA_DEBUG") == "1"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The HTTP clients' INFO lines carry the storage URLs uploads go to (presigned on the Hub): not for CI logs.
    for name in ("httpx", "httpx2", "httpcore", "httpcore2", "huggingface_hub", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.run(args) or 0
    except (KeyboardInterrupt, Terminated) as interrupt:
        if debug:
            raise
        print(f"sousa-builder {args.command}: interrupted: {_interrupted(args)}", file=sys.stderr)
        return 143 if isinstance(interrupt, Terminated) else 130
    except Exception as error:
        if debug:
            raise
        print(f"sousa-builder {args.command}: error: {describe_error(error, args)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
