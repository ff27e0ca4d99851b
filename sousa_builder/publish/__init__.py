"""Publish a prepared SOUSA folder to the Hub: one atomic commit, resumable, idempotent.

How it stays safe:
- The Hub is asked first (`preflight`): repo id, token, write access (`HfApi.auth_check`), revision, before
  any prepare, copy or upload.
- The prepared folder is validated before anything is sent (the prepared checks of `sousa-builder
  validate`); a folder that fails them is refused.
- Nothing is purged first. LFS content is uploaded before any commit (`preupload_lfs_files`);
  then a single `create_commit` adds the new shards and card and deletes the stale files, with
  `parent_commit` pinned to the revision the plan was made against. A reader of the branch sees the
  old tree or the new one, never a mix.
- Resumable: an interrupted upload changes no branch; a rerun asks the server which objects it
  already has and sends only the others.
- Idempotent: `prepare` output is byte-for-byte deterministic, files equal to the remote ones are
  left out of the commit, and when nothing differs no commit is made. File hashes are remembered
  (under HF_HOME) with the file's size, times and inode, so publishing again reads no unchanged file.

    python -m sousa_builder.publish user/sousa --data-dir output/dataset
    python -m sousa_builder.publish user/sousa --prepared build/sousa
    python -m sousa_builder.publish user/sousa --data-dir output/dataset --dry-run build/plan
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import PublishPlan
    from .push import PublishResult, check_prepared, publish, read_prepared_infos

__all__ = ["PublishPlan", "PublishResult", "check_prepared", "publish", "read_prepared_infos"]
# Imported on first use (PEP 562): `python -m sousa_builder.publish` imports this package before the command line
# can handle Ctrl-C, and `datasets` takes a while to import.
_LAZY = {"PublishPlan": "plan", "PublishResult": "push", "check_prepared": "push", "publish": "push",
         "read_prepared_infos": "push"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
