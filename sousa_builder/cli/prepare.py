"""`sousa-builder prepare DATA_DIR --out OUT`: the configs as Parquet shards in the Hub layout, with a README."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..layout import CONFIGS
from .parser import positive, size

if TYPE_CHECKING:
    from ..prepare import PrepareResult

# The shard writers `prepare.prepare(engine=...)` takes (a test checks they are `prepare.ENGINES`).
ENGINES = ("local", "ray")
EXAMPLES = """examples:
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


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the `prepare` subcommand to `commands` (the top-level parser's subparsers).

    Args:
        commands (`argparse._SubParsersAction`):
            Where the subcommand goes.
        common (`argparse.ArgumentParser`):
            The options every subcommand takes (`--debug`).
    """
    prep = commands.add_parser(
        "prepare",
        parents=[common],
        help="build the configs to Parquet in the Hub layout, with a README",
        description="Build the configs (audio, midi_only, labels_only) of a SOUSA output directory as Parquet\n"
        "shards in the Hub layout, with a README (dataset card) that datasets.load_dataset(OUT, CONFIG) reads.",
        epilog=EXAMPLES,
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
    prep.add_argument("--configs", nargs="+", choices=CONFIGS, help="configs to build (default: all)")
    prep.add_argument(
        "--num-proc", type=positive, default=None, metavar="N", help="processes writing shards (default 1)"
    )
    prep.add_argument("--max-shard-size", type=size, default=None, metavar="SIZE", help=MAX_SHARD_SIZE_HELP)
    prep.add_argument(
        "--engine", choices=ENGINES, default="local", help="who writes the shards: processes of this machine "
        "(local, the default) or Ray tasks (ray; needs the ray extra)"
    )  # fmt: skip
    prep.add_argument(
        "--ray-address", metavar="ADDRESS", help="with --engine ray: 'auto' joins the running Ray cluster, HOST:PORT "
        "the one whose head is there (default: start Ray on this machine, with --num-proc CPUs)"
    )  # fmt: skip
    prep.set_defaults(run=run, usage_error=prep.error)


def run(args: argparse.Namespace) -> None:
    """Prepare the source `args.data_dir` into `args.out` and print what was written.

    Args:
        args (`argparse.Namespace`):
            The parsed command line.

    Raises:
        `SystemExit`: a usage error (`--ray-address` without `--engine ray`).
        [`~errors.SousaError`]:
            Whatever `prepare` refuses (each names the file, URL or address); a storage URL that cannot be
            reached is a [`~errors.StorageConnectionError`] naming it.
    """
    if args.ray_address is not None and args.engine != "ray":
        args.usage_error("--ray-address needs --engine ray")
    from ..prepare import prepare
    from ..source import resolve_data_dir
    from ..storage import is_url, reaching

    data_dir = args.data_dir
    if not is_url(data_dir):
        data_dir = resolve_data_dir(data_dir, origin="the DATA_DIR argument")
    with reaching(args.data_dir, args.out):
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


def format_summary(result: PrepareResult) -> str:
    """A table of rows, shards and bytes per config and split.

    Args:
        result ([`~prepare.PrepareResult`]):
            What `prepare` wrote.

    Returns:
        `str`: the table, and a line saying where it was written and how long it took.
    """
    lines = [f"{'config':<12} {'split':<11} {'rows':>8} {'shards':>7} {'bytes':>14}"]
    for name, splits in result.configs.items():
        for split, output in splits.items():
            lines.append(
                f"{name:<12} {split:<11} {output.num_examples:>8} {len(output.files):>7} {output.file_bytes:>14,}"
            )
    verb = "replaced" if result.replaced_previous else "wrote"
    lines.append(f"{verb} {result.out} in {result.seconds:.1f} s")
    return "\n".join(lines)
