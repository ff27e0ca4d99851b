"""The argument parser: the top-level command, the options every subcommand shares, and their value types."""

from __future__ import annotations

import argparse
from typing import Any

from .. import __version__
from ..errors import EXIT_FAILED, EXIT_HANGUP, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE

EXAMPLES = """examples, one per command (COMMAND --help: its options and more examples):
  sousa-builder sample ./demo-data --seed 1
  sousa-builder validate ./demo-data
  sousa-builder prepare ./demo-data --out ./build/sousa
  sousa-builder validate --prepared ./build/sousa --source ./demo-data
  sousa-builder publish user/sousa --prepared ./build/sousa
"""
EXIT_CODES = f"""exit codes, the same in every command (docs/cli.md):
  0    done (validate: every check passed)
  {EXIT_FAILED}    refused or failed: bad input, a failed check, the Hub / storage / Ray refused or unreachable
  {EXIT_USAGE}    usage error: the command line itself is wrong
  {EXIT_INTERNAL}   internal error: a bug in sousa-builder (--debug shows the traceback; please report it)
  {EXIT_HANGUP}  hung up (SIGHUP: the terminal closed), cleaned up as for SIGTERM
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); {EXIT_TERMINATED} terminated (SIGTERM): one line, cleaned up
"""


def size(text: str) -> int:
    """Bytes from "500MB", "2GB" (datasets' own parser, imported only then) or a plain number of bytes.

    Args:
        text (`str`):
            The option's value.

    Returns:
        `int`: the size in bytes.

    Raises:
        `argparse.ArgumentTypeError`: `text` is not a size.
    """
    if text.isdigit():
        return int(text)
    from datasets.utils.py_utils import convert_file_size_to_int

    try:
        return convert_file_size_to_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 500MB, 2GB or 1000000") from err


def positive(text: str) -> int:
    """An integer of at least 1 (`argparse.ArgumentTypeError` otherwise)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def share(text: str) -> float:
    """A fraction within 0-1 (`argparse.ArgumentTypeError` otherwise)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction within 0-1 (0.02 is 2%), got {text}")
    return value


def non_negative(text: str) -> float:
    """A number of 0 or more (`argparse.ArgumentTypeError` otherwise)."""
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` that takes no abbreviation of an option: `--sour` is a typo to show, not `--source`.

    The subcommands' parsers are of this class too (`add_subparsers` makes them of the parser's own class), so an
    option added later cannot turn a working abbreviation into an ambiguous one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def common_options() -> argparse.ArgumentParser:
    """The options every subcommand also takes after its name (`sousa-builder validate --debug DIR`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error (also: "
        "SOUSA_DEBUG=1)"
    )  # fmt: skip
    return common


def build_parser() -> argparse.ArgumentParser:
    """The `sousa-builder` parser, with its four subcommands.

    Returns:
        `argparse.ArgumentParser`: a parser whose namespaces carry `run` (the subcommand's runner) and
        `usage_error` (the subcommand parser's `error`).
    """
    from . import prepare, publish, sample, validate  # the subcommands' modules import nothing heavy either

    parser = Parser(
        prog="sousa-builder",
        description="Turn a SOUSA output directory into a Hugging Face dataset: prepare it as Parquet shards\n"
        "with a dataset card, check it, publish it.",
        epilog=f"{EXAMPLES}\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: SOUSA_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()
    for module in (sample, prepare, publish, validate):
        module.add_parser(commands, common)
    return parser
