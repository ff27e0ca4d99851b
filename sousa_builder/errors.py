"""Every exception sousa-builder raises on purpose, in one place, and the exit code of each kind of outcome.

Each exception inherits `SousaError` (catch that to catch them all) and the built-in it resembles. The command
line prints these, and only these, as a one-line error with exit code `EXIT_FAILED`; any other exception is a
bug in sousa-builder (`EXIT_INTERNAL`). Two are not `SousaError`s: `Terminated` (a signal, like
KeyboardInterrupt) and `AnalysisError` (internal to the audio checks, see it). This module imports nothing: the
command line reads it first.
"""

from __future__ import annotations

# Exit codes, the same in every command (docs/cli.md has the table).
EXIT_OK = 0
EXIT_FAILED = 1  # a refused input, a failed check, or a service that refused or could not be reached
EXIT_USAGE = 2  # the command line itself is wrong (argparse's code)
EXIT_INTERNAL = 70  # an unexpected exception: a bug (EX_SOFTWARE of sysexits.h)
EXIT_HANGUP = 129  # SIGHUP (the terminal closed): cleaned up as for SIGTERM
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM


# Class names of a failure to connect: the built-ins, httpx's, requests' / urllib3's and botocore's.
_CONNECTION_ERRORS = {
    "ConnectionError", "ConnectError", "ConnectTimeout", "ConnectTimeoutError", "ConnectionRefusedError",
}  # fmt: skip


def is_connection_error(error: BaseException | None) -> bool:
    """Whether `error`, or one behind it, is a failure to reach a server.

    The built-in `ConnectionError`, or httpx's, requests' or botocore's (recognised by name: none is imported).

    Args:
        error (`BaseException`, *optional*):
            The exception to look at, with its `__cause__` and `__context__` chain.

    Returns:
        `bool`: True when a connection failure is in the chain.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        names = {cls.__name__ for cls in type(error).__mro__}
        if names & _CONNECTION_ERRORS:
            return True
        error = error.__cause__ or error.__context__
    return False


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that every cleanup runs (not a `SousaError`:
    like KeyboardInterrupt, it passes `except Exception`)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class SousaError(Exception):
    """Base class of sousa-builder's own errors; the CLI turns them into a message and exit code 1."""


class SourceNotFoundError(SousaError, FileNotFoundError):
    """No SOUSA dataset at the directory (or directories) looked at."""


class SourceFormatError(SousaError, ValueError):
    """The SOUSA directory is there but its labels, splits or media are unusable as they are."""


class OutputExistsError(SousaError, FileExistsError):
    """The output folder holds something that is not an earlier sousa-builder output."""


class OutputBusyError(SousaError, BlockingIOError):
    """Another sousa-builder run is writing the same output folder."""


class ReportPathError(SousaError, FileNotFoundError):
    """Where a report was asked to be written cannot take it (no such folder, or a folder)."""


class CardMetadataError(SousaError, ValueError):
    """A card whose YAML front matter is missing, does not parse, or is not a mapping."""


class PreparedFolderError(SousaError, ValueError):
    """A prepared folder that is incomplete or inconsistent, so it must not be published."""


class HubAccessError(SousaError, PermissionError):
    """No usable Hub token, or no write access to the repo's namespace."""


class HubRevisionError(SousaError, LookupError):
    """The revision to publish to does not exist in the repo."""


class PublishNotConfirmedError(SousaError, RuntimeError):
    """Publishing was not confirmed (no terminal to ask and no --yes)."""


class PublishConflictError(SousaError, RuntimeError):
    """The branch moved between planning and committing; nothing was committed."""


class StorageError(SousaError, OSError):
    """A URL whose filesystem cannot be used (its fsspec backend is not installed, say)."""


class StorageConnectionError(StorageError, ConnectionError):
    """The object storage of a URL (its endpoint) could not be reached."""

    def __init__(self, message: str, url: str | None = None):
        super().__init__(message)
        self.url = url


class HubConnectionError(SousaError, ConnectionError):
    """The Hub (its endpoint) could not be reached."""

    def __init__(self, message: str, endpoint: str | None = None):
        super().__init__(message)
        self.endpoint = endpoint


class HubRequestError(SousaError, RuntimeError):
    """The Hub answered a request with an error (a rate limit, a server error, a refused request)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RayNotInstalledError(SousaError, ImportError):
    """`--engine ray` without Ray installed."""


class RayConnectionError(SousaError, ConnectionError):
    """No Ray cluster could be joined at the address given (`--ray-address`)."""

    def __init__(self, message: str, address: str | None = None):
        super().__init__(message)
        self.address = address


class NotARegularFileError(SousaError, OSError):
    """A path that should be a regular file is something else (a FIFO, a device, a socket, a folder)."""


class AnalysisError(ValueError):
    """A file the audio checks (`validate --audio`) cannot analyse: silent, too short, or a MIDI without notes.

    Internal, and so not a `SousaError`: the checks catch it and report the file as one they could not judge, in
    the report; none reaches the user as an error. One that escaped would be a bug in sousa-builder, which the
    command line then reports as an internal error (`EXIT_INTERNAL`) rather than as bad input.
    """


class UndecodableError(AnalysisError):
    """A sound file whose frames do not all decode: a broken file, not a sound to judge (the audio checks report it
    as an error, `audio_full_decode`). Internal, like `AnalysisError`."""
