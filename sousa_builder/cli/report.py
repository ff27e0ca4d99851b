"""What the command line says when a subcommand fails or is interrupted: one line, and an exit code.

The package's own errors (`errors.SousaError`, each naming what failed: the file, the Hub, the storage URL, the
Ray address) are user errors, exit 1. So is an `OSError` that names its file (a read-only filesystem, a folder
where a file was expected): the system refused, not the code. Anything else is a bug, and is said to be one
(exit 70), with `--debug` for the traceback: a `ValueError` of pyarrow's or of JSON's is not bad input.
"""

from __future__ import annotations

from typing import Any

from ..errors import EXIT_FAILED, EXIT_INTERNAL, SousaError


def describe_error(error: BaseException) -> tuple[str, int]:
    """One line for a user, and the exit code of the kind of failure.

    Args:
        error (`BaseException`):
            What a subcommand raised. Our own error behind a library's wrapper (`datasets` wraps what a
            builder raises) is found through `__cause__`.

    Returns:
        `tuple[str, int]`: the message, and `EXIT_FAILED` for a user error or `EXIT_INTERNAL` for a bug.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, SousaError):
            return str(cause), EXIT_FAILED
        cause = cause.__cause__
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror.lower()}", EXIT_FAILED
    return (
        f"internal error: {type(error).__name__}: {_first_line(error)} (a bug in sousa-builder: run again with "
        "--debug for the traceback, and report it)",
        EXIT_INTERNAL,
    )


def interrupted(args: Any, interrupt: BaseException | None = None) -> str:
    """What an interrupted command leaves, in one line.

    Args:
        args (`argparse.Namespace` or `None`):
            The parsed command line (None when interrupted before it was parsed).
        interrupt (`BaseException`, *optional*):
            The interruption; the storage layer records on it what OUT was left as (`store.left_as`).

    Returns:
        `str`: e.g. "OUT is unchanged".
    """
    command = getattr(args, "command", None)
    if command in ("prepare", "sample"):
        left = getattr(interrupt, "sousa_output_left", None)  # store.LEFT; `store` imports pyarrow, not read here
        if left == "midway":
            return (
                f"{args.out} is midway through its replacement (files of both outputs): the next prepare into it "
                "completes it; until then validate --prepared refuses it"
            )
        if left == "replaced":
            return f"{args.out} was replaced by the new output (the next run removes what is left of the previous one)"
        return f"{args.out} is unchanged"
    if command == "publish":
        return "the branch changes only by one complete commit: run again to finish (nothing is sent twice)"
    return "nothing was changed"


def _first_line(error: BaseException) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
