"""`publish --data-dir`: check the Hub, check the source, prepare it in a temporary folder, publish that.

The order is the point: the token, write access, repo id and revision are checked first (seconds), then the
source (the checks of `sousa-builder validate`), and only then is the dataset prepared (the long part). The
temporary folder is removed when the run ends, however it ends; folders that killed runs left behind
(`WORK_PREFIX` + a pid that is gone) are removed by the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, get_token

from ..errors import SourceFormatError
from ..output import refuse_overlap
from ..prepare import PrepareResult, prepare
from ..source import resolve_data_dir
from ..validate import validate_source
from .preflight import bound_hub_requests, check_hub, check_repo_id
from .push import PublishResult, publish

logger = logging.getLogger(__name__)

WORK_PREFIX = "sousa-publish-"  # + the pid of the run + a random part: the temporary folder of a run


def publish_data_dir(
    repo_id: str,
    data_dir: str | os.PathLike,
    *,
    num_proc: int | None = None,
    max_shard_size: int | str | None = None,
    on_prepared: Callable[[PrepareResult], None] | None = None,
    **options: Any,
) -> PublishResult:
    """Prepare the SOUSA directory `data_dir` in a temporary folder and publish it to `repo_id`.

    Nothing is prepared before the Hub accepts the token, its write access, the repo id and the revision (not
    asked for a dry run), and the source passes the checks of `sousa-builder validate`.

    Args:
        repo_id (`str`):
            The dataset repo, `NAMESPACE/NAME`.
        data_dir (`str` or `os.PathLike`):
            A local SOUSA output directory.
        num_proc (`int`, *optional*):
            Processes writing shards (and checking media).
        max_shard_size (`int` or `str`, *optional*):
            The largest shard, in bytes or as "500MB".
        on_prepared (`Callable[[PrepareResult], None]`, *optional*):
            Sees what `prepare` wrote, before it is published.
        **options:
            The keyword arguments of [`publish`] (`token`, `revision`, `dry_run_dir`, `confirm`, ...).

    Returns:
        [`PublishResult`]: as [`publish`] returns it.

    Raises:
        [`~errors.HubAccessError`], [`~errors.HubRevisionError`], [`~errors.HubConnectionError`]:
            The Hub refused or could not be reached; raised before any work.
        [`~errors.SourceNotFoundError`], [`~errors.SourceFormatError`]:
            No SOUSA dataset at `data_dir`, or one that fails the source checks.
        Any error of [`prepare`] or [`publish`].
    """
    dry_run_dir = options.get("dry_run_dir")
    check_repo_id(repo_id)
    if dry_run_dir is not None:
        refuse_overlap(Path(dry_run_dir), "--dry-run", Path(data_dir), "the SOUSA directory")
    else:
        api = HfApi(endpoint=options.get("endpoint"), token=options.get("token") or get_token())
        bound_hub_requests()
        check_hub(api, repo_id, options.get("revision"))
    source = resolve_data_dir(data_dir, origin="--data-dir")
    check_source(source.path, num_proc)
    remove_dead_work_folders()
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-") as work:
        prepared = prepare(source, Path(work) / "prepared", num_proc=num_proc, max_shard_size=max_shard_size,
                           configs=options.get("configs"))  # fmt: skip
        if on_prepared is not None:
            on_prepared(prepared)
        return publish(repo_id, prepared.out, **options)


def check_source(data_dir: str | os.PathLike, num_proc: int | None = None) -> None:
    """Refuse a source that fails the checks of `sousa-builder validate` (labels and media; not `--audio`).

    Args:
        data_dir (`str` or `os.PathLike`):
            A local SOUSA output directory.
        num_proc (`int`, *optional*):
            Processes checking the media.

    Raises:
        [`~errors.SourceFormatError`]:
            A check failed; the message names the failed checks and the command that shows them all.
    """
    report = validate_source(data_dir, num_proc=num_proc)
    report.refuse_if_failed(SourceFormatError, f"sousa-builder validate {data_dir}")


def remove_dead_work_folders() -> None:
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
