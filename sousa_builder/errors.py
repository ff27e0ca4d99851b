"""Every exception sousa-builder raises on purpose, in one place.

Each inherits `SousaError` (catch that to catch them all) and the built-in it resembles.
"""

from __future__ import annotations


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
