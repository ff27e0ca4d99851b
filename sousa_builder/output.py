"""A local output folder, as `store.replacing` writes it: locked, built aside, put in place in one step.

`FolderStore` locks OUT (a lock file beside it, `filelock`), builds the new output in a staging folder next
to OUT and, when it is complete, puts it in OUT's place: in one step where Linux can
(`renameat2(RENAME_EXCHANGE)`), else by two renames recorded in a journal that the next run completes (signals
are held between them, so Ctrl-C cannot land in between). A file of an earlier output is proven by its sha256
(the hash cache reads only files changed since). Staging and retired folders left by runs that died
(SIGKILL, power loss) are removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import OutputBusyError, OutputExistsError
from .manifest import ContentCheck, Found, Manifest, folder_content_check, folder_entries, write_manifest
from .store import REPLACED, OutputStore, Staging, mark_left, refuse_overlap, replacing

__all__ = ["FolderStore", "refuse_overlap", "replacing"]

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class FolderStore(OutputStore):
    """OUT as a local folder (see the module's docstring)."""

    def __init__(self, out: Path, option: str):
        self.out, self.option = out, option

    @contextlib.contextmanager
    def claimed(self) -> Iterator[None]:
        """See `OutputStore.claimed`: a lock file `.OUT.lock` beside OUT (`filelock`), its folder made if missing.

        Raises:
            [`~errors.OutputExistsError`]:
                OUT's parent folder cannot be made (under a file, read-only, not ours to write).
            [`~errors.OutputBusyError`]:
                Another run holds the lock.
        """
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # under a file, on a read-only filesystem, in a folder we may not write to
            raise OutputExistsError(
                f"{self.option} {self.out}: cannot make its folder ({err.strerror}: {err.filename})"
            ) from None
        with _locked(self.out):
            yield

    def settle(self) -> list[Manifest]:
        """See `OutputStore.settle`: completes the two renames a dead run left half done (its journal).

        Returns:
            `list[Manifest]`: always empty: a local replacement is never kept midway.
        """
        _recover(self.out)
        return []

    def remove_leftovers(self) -> None:
        """See `OutputStore.remove_leftovers`: the `.OUT.partial-*` and `.OUT.old-*` folders beside OUT."""
        for pattern in (f".{self.out.name}.partial-*", f".{self.out.name}.old-*"):
            for leftover in self.out.parent.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)

    def present(self) -> dict[str, Found] | None:
        """See `OutputStore.present`.

        Raises:
            [`~errors.OutputExistsError`]:
                OUT is a symlink or a file, not a folder.
        """
        if not self.out.exists() and not self.out.is_symlink():
            return None
        if self.out.is_symlink() or not self.out.is_dir():
            raise OutputExistsError(f"{self.option} {self.out}: exists and is not a folder; choose another")
        return folder_entries(self.out)

    def manifest(self) -> Manifest | None:
        """See `OutputStore.manifest`: `OUT/.sousa/manifest.json`."""
        return Manifest.read(self.out)

    def content_check(self, present: Mapping[str, Found]) -> ContentCheck:
        """See `OutputStore.content_check`: a file's sha256 (`manifest.folder_content_check`)."""
        return folder_content_check(self.out)

    def new_staging(self, replaces_previous: bool) -> Staging:
        """See `OutputStore.new_staging`: a `.OUT.partial-*` folder beside OUT, with the user's umask."""
        staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        try:
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; an output folder gets the user's umask
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Staging(staging, replaces_previous, self)

    def write_staging_manifest(self, staging: Staging, kind: str, known: Mapping[str, str]) -> Manifest:
        """See `OutputStore.write_staging_manifest`."""
        return write_manifest(Path(staging.path), kind, known)

    def discard(self, staging: Staging) -> None:
        """See `OutputStore.discard`."""
        shutil.rmtree(staging.path, ignore_errors=True)

    def put_in_place(self, staging: Staging, pending: list[Manifest]) -> None:
        """See `OutputStore.put_in_place`: one `renameat2(RENAME_EXCHANGE)` where Linux can, else two renames and a
        journal, with signals held in between.
        """
        _put_in_place(Path(staging.path), self.out, staging.replaces_previous)

    def in_progress(self) -> str | None:
        """See `OutputStore.in_progress`: a journal left between the two renames."""
        if _journal(self.out).exists():
            return (
                f"{self.out}: a run died between the two renames that put its output in place ({_journal(self.out)}); "
                "the next prepare into it completes them"
            )
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on `.OUT.lock` beside `out` (`filelock`); refuse if another run holds it.

    The file is removed while still locked: a run that opened it meanwhile finds it unlinked when it gets the
    lock (filelock checks), and locks a new one.
    """
    path = out.parent / f".{out.name}.lock"
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputBusyError(
            f"{out}: another sousa-builder run is writing it now; wait for it to end, then run again"
        ) from None
    try:
        yield
    finally:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        finally:
            lock.release()


def _journal(out: Path) -> Path:
    return out.parent / f".{out.name}.replacing.json"


def _put_in_place(staging: Path, out: Path, previous: bool) -> None:
    """Make `staging` the new `out`; the previous `out` (an earlier output, checked) is removed. Signals are held
    while the output is swapped, and one that came meanwhile is raised after it, saying OUT was replaced."""
    placed = False
    try:
        with _signals_held():
            if not previous:
                if out.exists():  # empty: nothing of the user's to keep
                    out.rmdir()
                staging.rename(out)
                placed = True
                return
            if _exchange(staging, out):
                placed = True
                retired = staging  # now the previous output
            else:
                retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                retired.rmdir()
                journal = _journal(out)
                journal.write_text(json.dumps({"staging": staging.name, "retired": retired.name}), encoding="utf-8")
                out.rename(retired)
                staging.rename(out)
                placed = True
                journal.unlink()
        shutil.rmtree(retired)
    except BaseException as err:
        if placed:  # the previous output, if still there, is a leftover the next run removes
            mark_left(err, REPLACED)
        raise


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP in the block (they are delivered after it): two renames are one step."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # glibc before 2.28, or another libc
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a filesystem without exchange
        return False
    raise OSError(error, os.strerror(error), str(b))


def _recover(out: Path) -> None:
    """Complete a replacement that a dead run left between its two renames."""
    journal = _journal(out)
    if journal.exists():
        try:
            names = json.loads(journal.read_text(encoding="utf-8"))
            staging, retired = out.parent / names["staging"], out.parent / names["retired"]
        except (OSError, ValueError, KeyError, TypeError):
            staging = retired = None
        if staging is not None and not out.exists():
            if staging.is_dir():  # the new output was complete: finish the swap
                staging.rename(out)
                logger.info("completed the replacement of %s that an earlier run left half done", out)
            elif retired.is_dir():  # cannot happen unless the staging folder was removed: keep the previous one
                retired.rename(out)
        journal.unlink()
