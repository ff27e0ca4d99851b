"""One way to write OUT, a local folder or a URL: claimed, checked, built aside, put in place, cleaned after.

`replacing(out, kind, option)` is the whole promise, written once; a store (`output.FolderStore` for a local
folder, `bucket_output.BucketStore` for a URL) supplies the steps it cannot share:

1. OUT is claimed: a lock file beside a folder, a lease object under a URL (`lease`); a second run is refused.
2. What runs that are gone left is removed: temporary folders of dead processes (named with their pid), staging
   folders or prefixes, unfinished multipart uploads. A replacement that a dead run left complete is finished;
   one stopped midway (object storage only: its copies cannot be one step) is kept as it is, for the next run
   that gets as far as putting its own output in place: a refused run changes nothing.
3. OUT must be empty or an earlier output of the same kind, each file proven by its content (a sha256 locally,
   the store's ETag for an object) against the manifest (`manifest.listing_problems`); anything else is refused.
4. The new output is built in a staging folder or prefix, then put in place; an exception raised on the way
   (Ctrl-C, SIGTERM) carries what OUT was left as (`left_as`): unchanged, midway, or replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OutputExistsError
from .manifest import SHOWN, ContentCheck, Found, Manifest, listing_problems
from .storage import location, overlapping, reaching

logger = logging.getLogger(__name__)

# What an interrupted run left OUT as (the attribute `LEFT` of the exception; `left_as` reads it).
UNCHANGED = "unchanged"
MIDWAY = "midway"  # some files of the new output are in place, not all: the next prepare completes it
REPLACED = "replaced"  # the new output is in place; only leftovers remain, for the next run to remove
LEFT = "sousa_output_left"

# Temporary folders of a run, named PREFIX + pid + "-" + random: removed by a later run once that pid is gone.
TEMPORARY_PREFIXES = ("sousa-prepare-",)  # prepare's scratch folder: nothing else copies to local disk


@dataclass
class Staging:
    """Where the new output is built (a folder, or a URL prefix), and whether it replaces an earlier one."""

    path: Path | str
    replaces_previous: bool
    store: OutputStore = field(repr=False)
    manifest: Manifest | None = None

    def write_manifest(self, kind: str, known: Mapping[str, str]) -> Manifest:
        """List every file of the staging in its manifest.

        Args:
            kind (`str`):
                What wrote it ("prepare", ...).
            known (`Mapping[str, str]`):
                path -> sha256 of the files hashed while they were written (the others are read to hash them).

        Returns:
            [`~manifest.Manifest`]: the manifest written.
        """
        self.manifest = self.store.write_staging_manifest(self, kind, known)
        return self.manifest


class OutputStore(ABC):
    """The steps of `replacing` that differ between a local folder and object storage."""

    out: Path | str
    option: str

    @abstractmethod
    def claimed(self) -> contextlib.AbstractContextManager[None]:
        """Hold OUT for this run (a lock, a lease); refuse with `OutputBusyError` while another run holds it."""

    @abstractmethod
    def settle(self) -> list[Manifest]:
        """Finish a replacement a dead run left complete; the manifests of one stopped midway (kept as it is)."""

    @abstractmethod
    def remove_leftovers(self) -> None:
        """Remove the staging (and uploads) of runs that are gone; never what a kept replacement needs."""

    @abstractmethod
    def present(self) -> dict[str, Found] | None:
        """The entries of OUT, but the store's own; None when OUT is absent."""

    @abstractmethod
    def manifest(self) -> Manifest | None:
        """OUT's manifest, if it has one that reads."""

    @abstractmethod
    def content_check(self, present: Mapping[str, Found]) -> ContentCheck:
        """How the content of a file of OUT is proven to be a listed one."""

    @abstractmethod
    def new_staging(self, replaces_previous: bool) -> Staging:
        """A new, empty staging, named as this store's own."""

    @abstractmethod
    def write_staging_manifest(self, staging: Staging, kind: str, known: Mapping[str, str]) -> Manifest:
        """Write the manifest of the staging's files (see `Staging.write_manifest`)."""

    @abstractmethod
    def discard(self, staging: Staging) -> None:
        """Remove a staging that will not be put in place."""

    @abstractmethod
    def put_in_place(self, staging: Staging, pending: list[Manifest]) -> None:
        """Make the staging OUT; an exception on the way says what OUT was left as (`mark_left`)."""

    @abstractmethod
    def in_progress(self) -> str | None:
        """Why OUT is not an output now (a replacement stopped midway), or None."""


def open_store(out: Path | str, option: str) -> OutputStore:
    """The store of `out`: a local folder (a Path) or a URL (a str).

    Args:
        out (`Path` or `str`):
            The output, as `storage.location` gives it.
        option (`str`):
            The option that named it, for messages ("--out").

    Returns:
        [`OutputStore`]: the store.
    """
    if isinstance(out, Path):
        from .output import FolderStore

        return FolderStore(out, option)
    from .bucket_output import BucketStore

    return BucketStore(out, option)


def refuse_overlap(target: str | os.PathLike, option: str, protected: str | os.PathLike, what: str) -> None:
    """Refuse an output (a folder or URL) that is, holds, or lies inside `protected` (the user's `what`), before
    anything is written: replacing it, or writing into it, would change what it is made from.

    Args:
        target (`str` or `os.PathLike`):
            The folder or URL to write.
        option (`str`):
            The option that named it, for the message ("--out", "--dry-run").
        protected (`str` or `os.PathLike`):
            A folder or URL of the user's that must not be touched.
        what (`str`):
            What `protected` is, for the message ("the SOUSA directory").

    Raises:
        [`~errors.OutputExistsError`]:
            `target` is, holds or lies inside `protected` (`storage.overlapping`).
    """
    if overlapping(target, protected):
        shown = [where.resolve() if isinstance(where, Path) else where for where in map(location, (target, protected))]
        raise OutputExistsError(
            f"{option} {shown[0]}: is, holds or lies inside {what} {shown[1]}; choose a location outside it"
        )


@contextlib.contextmanager
def replacing(out: Path | str, kind: str, option: str) -> Iterator[Staging]:
    """Build the new `out` in the yielded staging; it takes `out`'s place if the block ends well.

    Args:
        out (`Path` or `str`):
            The output: absent, empty, or an earlier output of the same `kind` (unchanged since).
        kind (`str`):
            What writes it ("prepare", "publish --dry-run", ...), as its manifest records.
        option (`str`):
            The option that named `out`, for messages ("--out").

    Yields:
        [`Staging`]: where to build, and whether it replaces an earlier output.

    Raises:
        [`~errors.OutputBusyError`]:
            Another run holds `out`.
        [`~errors.OutputExistsError`]:
            `out` holds something else, or cannot be made.
        `BaseException`: whatever the block raises, with `left_as` saying what `out` was left as.
    """
    store = open_store(out, option)
    with store.claimed():
        remove_dead_temporary_folders()
        pending = store.settle()
        store.remove_leftovers()
        previous = check_replaceable(store, kind, pending)
        staging = store.new_staging(previous or bool(pending))
        try:
            yield staging
            store.put_in_place(staging, pending)
        except BaseException as err:
            mark_left(err, UNCHANGED)  # unless putting it in place began (`put_in_place` says how far it got)
            if left_as(err) == UNCHANGED:
                with contextlib.suppress(Exception):
                    store.discard(staging)
                if pending:  # as it was: midway through an earlier run's replacement
                    setattr(err, LEFT, MIDWAY)
            raise
    if previous:
        logger.info("replaced the previous %s", out)


def check_replaceable(store: OutputStore, kind: str, pending: list[Manifest]) -> bool:
    """Whether OUT holds an earlier output of `kind` (True) or nothing (False); refuse anything else.

    Args:
        store ([`OutputStore`]):
            OUT's store.
        kind (`str`):
            The kind of output to write.
        pending (`list[Manifest]`):
            The manifests of a replacement stopped midway: their files may be in OUT too.

    Returns:
        `bool`: True for an earlier output, False for nothing.

    Raises:
        [`~errors.OutputExistsError`]:
            OUT holds something this command did not write, or that changed since.
    """
    present = store.present()
    if present is None:
        return False
    manifest = store.manifest()
    if not present and manifest is None and not pending:
        return False
    where = f"{store.option} {store.out}"
    if manifest is None or manifest.kind != kind:
        what = "no sousa-builder manifest" if manifest is None else f"the output of `{manifest.kind}`"
        names = sorted({relative.split("/")[0] for relative in present})
        shown = ", ".join(names[:SHOWN]) + (" ..." if len(names) > SHOWN else "")
        raise OutputExistsError(
            f"{where}: holds files this command did not write ({what}: {shown}); choose another location, "
            "or empty it yourself"
        )
    problems = listing_problems(present, [manifest, *pending], store.content_check(present), complete=not pending)
    if problems:
        raise OutputExistsError(
            f"{where}: holds files this command did not write or that changed since "
            f"({', '.join(problems[:SHOWN])}{' ...' if len(problems) > SHOWN else ''}); choose another location, "
            "or empty it yourself"
        )
    return True


def in_progress(out: Path | str) -> str | None:
    """Why `out` is not an output now: a replacement stopped midway (the next prepare completes it); else None.

    Args:
        out (`Path` or `str`):
            A prepared output (a local folder or a URL).

    Returns:
        `str` or `None`: one line naming `out`, or None.
    """
    with reaching(out):
        return open_store(out, "").in_progress()


def mark_left(error: BaseException, state: str) -> None:
    """Record on `error` what OUT was left as (UNCHANGED, MIDWAY or REPLACED), unless already recorded."""
    if getattr(error, LEFT, None) is None:
        setattr(error, LEFT, state)


def left_as(error: BaseException | None) -> str | None:
    """What OUT was left as when `error` went through `replacing`: UNCHANGED, MIDWAY, REPLACED, or None.

    Args:
        error (`BaseException`, *optional*):
            What stopped the run (Ctrl-C's `KeyboardInterrupt`, say).

    Returns:
        `str` or `None`: the state, or None when `replacing` was not involved.
    """
    return getattr(error, LEFT, None)


def remove_dead_temporary_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the temporary folders (`TEMPORARY_PREFIXES` + pid + "-" + random) of runs whose process is gone.

    Args:
        root (`str` or `os.PathLike`, *optional*):
            Where to look (default: the temporary folder, `tempfile.gettempdir()`).

    Returns:
        `list[Path]`: the folders removed.
    """
    removed = []
    for prefix in TEMPORARY_PREFIXES:
        for folder in Path(root or tempfile.gettempdir()).glob(f"{prefix}*-*"):
            pid, _, rest = folder.name[len(prefix) :].partition("-")
            if pid.isdigit() and rest and folder.is_dir() and not folder.is_symlink() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    if removed:
        logger.info("removed %d temporary folder(s) of runs that are gone", len(removed))
    return removed


def temporary_prefix(prefix: str) -> str:
    """The name prefix of a temporary folder of this process (`prefix` + pid + "-"), which later runs remove once
    this process is gone."""
    return f"{prefix}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
