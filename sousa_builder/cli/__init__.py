"""The `sousa-builder` command line: parse, run one subcommand, report the outcome in one line.

One module per subcommand (`sample`, `prepare`, `validate`, `publish`), each with its parser and its runner;
`parser` holds the shared option types, `report` turns an exception into a message and an exit code.

Only the standard library and `sousa_builder.errors` are imported until a subcommand runs: the signal handlers
are in place before `datasets`, pyarrow and pandas are imported (which takes a while), and `--help`, `--version`
and usage errors import none of them. Exit codes are in `errors` (`EXIT_*`) and docs/cli.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, Terminated
from .parser import build_parser
from .report import describe_error, interrupted

__all__ = ["Terminated", "build_parser", "main"]

# The HTTP and storage clients' INFO lines carry the storage URLs uploads go to (presigned on the Hub) and say where
# credentials were found ("Found credentials in environment variables"): not for the user's stderr nor CI logs.
QUIET_LOGGERS = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "huggingface_hub",
    "urllib3",
    "botocore",
    "aiobotocore",
    "s3fs",
    "fsspec",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv (`Sequence[str]`, *optional*):
            The arguments after the program name (default: `sys.argv[1:]`).

    Returns:
        `int`: the exit code: 0 done, 1 refused or failed, 2 usage error, 70 internal error, 129 / 130 / 143
        after SIGHUP / Ctrl-C / SIGTERM (docs/cli.md).

    Raises:
        `SystemExit`: from argparse, for `--help`, `--version` and usage errors (exit code 0 or 2).
    """
    args: Any = None
    debug = os.environ.get("SOUSA_DEBUG") == "1"
    with _signals_raise():
        try:
            args, unknown = build_parser().parse_known_args(argv)
            if unknown:  # the subcommand's usage, not the top-level one's
                args.usage_error(f"unrecognized arguments: {' '.join(unknown)}")
            debug = debug or args.debug
            _configure_logging()
            return args.run(args) or EXIT_OK
        except (KeyboardInterrupt, Terminated) as interrupt:
            if debug:
                raise
            print(f"{_prog(args)}: interrupted: {interrupted(args, interrupt)}", file=sys.stderr)
            return _interrupted_code(interrupt)
        except Exception as error:
            if debug:
                raise
            message, code = describe_error(error)
            print(f"{_prog(args)}: error: {message}", file=sys.stderr)
            return code


def _prog(args: Any) -> str:
    command = getattr(args, "command", None)
    return f"sousa-builder {command}" if command else "sousa-builder"


def _interrupted_code(interrupt: BaseException) -> int:
    if isinstance(interrupt, Terminated):
        return EXIT_HANGUP if interrupt.signum == signal.SIGHUP else EXIT_TERMINATED
    return EXIT_INTERRUPTED


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) raise `Terminated` inside the block; the handlers before come back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = (signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, _terminate) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
