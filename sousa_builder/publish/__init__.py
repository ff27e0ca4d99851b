"""Publish a prepared SOUSA folder to the Hub: one atomic commit, resumable, idempotent.

How it stays safe:
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

import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetInfo
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils.sha import git_hash

from ..builder import config_names
from ..card import card_infos, dataset_card_text, label_counts
from ..errors import HubAccessError, PreparedFolderError, PublishConflictError
from ..layout import README, shard_glob
from ..manifest import write_manifest
from ..output import refuse_overlap, replacing
from ..remote_output import local_copy
from ..storage import is_url
from ..validate import validate_prepared
from .plan import LocalFile, PublishPlan, RemoteState, local_files, make_plan, remote_state

__all__ = ["PublishPlan", "PublishResult", "check_prepared", "publish", "read_prepared_infos"]

logger = logging.getLogger(__name__)

_REPO_NAME = re.compile(r"[A-Za-z0-9][\w.\-]{0,95}")
DRY_RUN = "publish --dry-run"  # the kind of folder in its manifest
# Rows per split that the pre-publish validation loads with `datasets` (the footers are checked in full).
VALIDATION_ROWS = 100


@dataclass
class PublishResult:
    """The plan carried out, and the commit it made (None when there was nothing to publish)."""

    plan: PublishPlan
    commit_url: str | None = None
    pull_request_url: str | None = None
    cancelled: bool = False


def publish(
    repo_id: str,
    prepared: str | os.PathLike,
    *,
    token: str | None = None,
    revision: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    commit_message: str | None = None,
    configs: Sequence[str] | None = None,
    dry_run_dir: str | os.PathLike | None = None,
    confirm: Callable[[PublishPlan], bool] | None = None,
    endpoint: str | None = None,
) -> PublishResult:
    """Push the prepared folder's configs (all, or `configs`), auxiliary tables and card to `repo_id`.

    The folder must pass the prepared checks of `sousa-builder validate` (`PreparedFolderError` if not)
    before anything is sent or written; when the branch already holds exactly these files, nothing is
    sent and the checks are not run.
    Configs already on the Hub but not pushed are kept, with their entries in the card.
    With `dry_run_dir`, nothing is sent: the tree that would be pushed is written there instead.
    `confirm` sees the plan before anything is uploaded; returning False stops there.
    `prepared` may be a URL (`prepare --out s3://...`): it is published from a temporary local copy.
    """
    if is_url(prepared):
        with local_copy(str(prepared)) as folder:
            return publish(repo_id, folder, token=token, revision=revision, private=private, create_pr=create_pr,
                           commit_message=commit_message, configs=configs, dry_run_dir=dry_run_dir, confirm=confirm,
                           endpoint=endpoint)  # fmt: skip
    prepared = Path(prepared)
    check_repo_id(repo_id)
    if dry_run_dir is not None:
        refuse_overlap(Path(dry_run_dir), "--dry-run", prepared, "the prepared folder")
    local_infos = read_prepared_infos(prepared)
    prepared_card = (prepared / README).read_bytes()
    local_card = (git_hash(prepared_card), dict(local_infos))
    if configs:
        missing = sorted(set(configs) - set(local_infos))
        if missing:
            raise PreparedFolderError(f"{prepared} has no config {', '.join(missing)} to publish")
        local_infos = {name: info for name, info in local_infos.items() if name in configs}
    api = HfApi(endpoint=endpoint, token=token or get_token())
    if dry_run_dir is None:
        _check_write_access(api, repo_id)
    try:
        remote = remote_state(api, repo_id, revision, local_card)
    except Exception as err:
        if dry_run_dir is None or not is_connection_error(err):
            raise
        logger.warning("could not reach the Hub (%s): planned as against an empty repo", type(err).__name__)
        remote = RemoteState(revision or "main", None, {}, {})
    kept_infos = {name: info for name, info in remote.infos.items() if name not in local_infos}
    if kept_infos or local_infos.keys() != local_card[1].keys():
        card = dataset_card_text({**kept_infos, **local_infos}, counts=label_counts(prepared, local_infos)).encode()
    else:  # the card prepare wrote describes exactly these configs (and has passed validation's readme check)
        card = prepared_card
    local = local_files(prepared, card, local_infos)
    plan = make_plan(repo_id, remote, local, pushed_configs=set(local_infos))
    if plan.is_empty and dry_run_dir is None:
        # The branch holds exactly these files already: nothing would be sent, so there is nothing to check.
        logger.info("nothing to publish: %s@%s already holds these files", repo_id, plan.revision)
        return PublishResult(plan)

    check_prepared(prepared)
    if dry_run_dir is not None:
        _write_tree(local, Path(dry_run_dir))
        return PublishResult(plan)
    if confirm is not None and not confirm(plan):
        return PublishResult(plan, cancelled=True)
    _create_repo(api, repo_id, private)

    additions = [_addition(f) for f in local if f.path in {*plan.add, *plan.replace}]
    api.preupload_lfs_files(repo_id, additions, repo_type="dataset", revision=plan.revision)
    try:
        commit = api.create_commit(
            repo_id,
            operations=[*(CommitOperationDelete(path) for path in plan.delete), *additions],
            commit_message=commit_message or _commit_message(local_infos),
            repo_type="dataset",
            revision=plan.revision,
            create_pr=create_pr,
            parent_commit=plan.parent_commit,
        )
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code == 412:
            raise PublishConflictError(
                f"{repo_id}@{plan.revision} changed while publishing (someone else committed); run again: "
                "the uploaded files are kept on the Hub and will not be sent twice"
            ) from None
        raise
    return PublishResult(plan, commit_url=commit.commit_url, pull_request_url=commit.pr_url)


def check_repo_id(repo_id: str) -> None:
    """Refuse a repo id that is not NAMESPACE/NAME (a dataset repo on the Hub has both)."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or not all(_REPO_NAME.fullmatch(part) for part in parts):
        raise ValueError(f"repo id {repo_id!r} is malformed: expected NAMESPACE/NAME, e.g. user/sousa")


def is_connection_error(error: BaseException) -> bool:
    """Whether `error`, or one behind it, is a failure to reach a server (built-in, httpx or requests)."""
    while error is not None:
        names = {cls.__name__ for cls in type(error).__mro__}
        if names & {"ConnectionError", "ConnectError", "ConnectTimeout", "ConnectionRefusedError"}:
            return True
        error = error.__cause__ or error.__context__
    return False


def read_prepared_infos(prepared: Path) -> dict[str, DatasetInfo]:
    """Config name -> info (features, splits, sizes) from a prepared folder's README YAML."""
    readme = prepared / README
    if not readme.is_file():
        raise PreparedFolderError(f"{readme}: missing; run `sousa-builder prepare` to make a prepared folder")
    infos = card_infos(readme.read_text(encoding="utf-8"))
    unknown = sorted(set(infos) - set(config_names()))
    if not infos or unknown:
        raise PreparedFolderError(f"{readme}: dataset_info lists {unknown or 'no'} config(s) that this tool makes")
    for name, info in infos.items():
        for split in info.splits or {}:
            if not list((prepared / name).glob(shard_glob(split))):
                raise PreparedFolderError(f"{prepared / name}: no shard for split {split!r} that the README lists")
    return infos


def check_prepared(prepared: Path) -> None:
    """Run the prepared-folder checks of `sousa-builder validate`; raise if any fails."""
    report = validate_prepared(prepared, sample=VALIDATION_ROWS)
    report.refuse_if_failed(PreparedFolderError, f"sousa-builder validate --prepared {prepared}")
    logger.info("validated %s: %d checks, no failure", prepared, len(report.checks))


def _addition(f: LocalFile) -> CommitOperationAdd:
    """The commit operation adding `f`, with the sha256 already computed (the client would read the file again:
    `UploadInfo.sha256` is computed lazily and settable since huggingface_hub 1.x)."""
    operation = CommitOperationAdd(f.path, _fileobj(f.source))
    operation.upload_info.sha256 = bytes.fromhex(f.sha256)
    return operation


def _fileobj(source: Path | bytes) -> str | bytes:
    return source if isinstance(source, bytes) else str(source)


def _write_tree(local: list[LocalFile], target: Path) -> None:
    """Write the files that would be pushed into `target` (replacing only an earlier dry run there)."""
    with replacing(target.absolute(), DRY_RUN, "--dry-run") as staging:
        for f in local:
            destination = staging.path / f.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(f.source, bytes):
                destination.write_bytes(f.source)
            else:
                shutil.copyfile(f.source, destination)
        write_manifest(staging.path, DRY_RUN, known={f.path: f.sha256 for f in local})


def _commit_message(infos: dict[str, DatasetInfo]) -> str:
    rows = ", ".join(
        f"{name}: {sum(s.num_examples for s in info.splits.values())} rows" for name, info in infos.items()
    )
    return f"Publish SOUSA ({rows})"


def _check_write_access(api: HfApi, repo_id: str) -> None:
    if not api.token:
        raise HubAccessError("no Hub token: set HF_TOKEN or log in with `hf auth login`")
    try:
        whoami = api.whoami()
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code == 401:
            raise HubAccessError(
                "the Hub refused the token (invalid or expired): set HF_TOKEN to a valid one"
            ) from None
        raise
    namespace = repo_id.split("/")[0]
    orgs = {org.get("name") for org in whoami.get("orgs", [])}
    if namespace != whoami.get("name") and namespace not in orgs:
        raise HubAccessError(
            f"user {whoami.get('name')!r} cannot write to namespace {namespace!r} (not theirs, nor an org of theirs)"
        )


def _create_repo(api: HfApi, repo_id: str, private: bool) -> None:
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code in (401, 403):
            raise HubAccessError(f"no write access to {repo_id}: {err.response.status_code}") from None
        raise
