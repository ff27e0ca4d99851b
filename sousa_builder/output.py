"""Writing an output folder safely: one run at a time, built aside, put in place in one step.

`replacing(out, kind, option)` locks OUT (a lock file beside it), refuses OUT unless it is empty or
an earlier output of the same kind (`manifest.check_replaceable`), and yields a staging folder next
to OUT. When the block ends well, the staging folder takes OUT's place: in one step where Linux can
(`renameat2(RENAME_EXCHANGE)`), else by two renames recorded in a journal that the next run
completes. When it does not, the staging folder is removed and OUT is as it was. Staging and
retired folders left by runs that died (SIGKILL, power loss) are removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import OutputBusyError, OutputExistsError
from .manifest import Manifest, check_replaceable, write_manifest

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass
class Staging:
    """The folder to build the new output in, and whether it replaces an earlier one."""

    path: Path
    replaces_previous: bool

    def write_manifest(self, kind: str, known: Mapping[str, str]) -> Manifest:
        """List every file of the staging folder in its manifest (`known`: path -> sha256 already computed)."""
        return write_manifest(self.path, kind, known)


@contextlib.contextmanager
def replacing(out: Path, kind: str, option: str) -> Iterator[Staging]:
    """Build the new `out` in the yielded staging folder; it takes `out`'s place if the block ends well.

    Args:
        out (`Path`):
            The output folder: absent, empty, or an earlier output of the same `kind` (unchanged since).
        kind (`str`):
            What writes it ("prepare", "publish --dry-run", ...), as its manifest records.
        option (`str`):
            The option that named `out`, for messages ("--out").

    Yields:
        [`Staging`]: the folder to build in, and whether it replaces an earlier output.

    Raises:
        [`~errors.OutputBusyError`]:
            Another run holds the lock beside `out`.
        [`~errors.OutputExistsError`]:
            `out` holds something else, or its folder cannot be made.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # under a file, on a read-only filesystem, in a folder we may not write to
        raise OutputExistsError(f"{option} {out}: cannot make its folder ({err.strerror}: {err.filename})") from None
    with _locked(out):
        _recover(out)
        previous = check_replaceable(out, kind, option)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        try:
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0700; an output folder gets the user's umask
            yield Staging(staging, previous)
            _put_in_place(staging, out, previous)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def refuse_overlap(target: Path, option: str, protected: Path, what: str) -> None:
    """Refuse an output folder that is, holds, or lies inside `protected` (the user's `what`).

    Args:
        target (`Path`):
            The folder to write.
        option (`str`):
            The option that named it, for the message ("--dry-run").
        protected (`Path`):
            A folder of the user's that must not be touched.
        what (`str`):
            What `protected` is, for the message ("the SOUSA directory").

    Raises:
        [`~errors.OutputExistsError`]:
            `target` is, holds or lies inside `protected`.
    """
    target, protected = target.absolute().resolve(), protected.absolute().resolve()
    if target == protected or protected.is_relative_to(target) or target.is_relative_to(protected):
        raise OutputExistsError(
            f"{option} {target}: is, holds or lies inside {what} {protected}; choose a folder outside it"
        )


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
    """Make `staging` the new `out`; the previous `out` (an earlier output, checked) is removed."""
    if not previous:
        if out.exists():  # empty: nothing of the user's to keep
            out.rmdir()
        staging.rename(out)
        return
    if _exchange(staging, out):
        shutil.rmtree(staging)  # now the previous output
        logger.info("replaced the previous %s", out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    retired.rmdir()
    journal = _journal(out)
    journal.write_text(json.dumps({"staging": staging.name, "retired": retired.name}), encoding="utf-8")
    out.rename(retired)
    staging.rename(out)
    journal.unlink()
    shutil.rmtree(retired)
    logger.info("replaced the previous %s", out)


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
    """Complete a replacement that a dead run left between its two renames; remove what dead runs left."""
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
    for leftover in out.parent.glob(f".{out.name}.partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in out.parent.glob(f".{out.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)
