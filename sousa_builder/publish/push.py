"""`publish`: the plan, the checks, then one commit (the package docstring says how it stays safe)."""

from __future__ import annotations

import contextlib
import logging
import os
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
from ..errors import HubConnectionError, PreparedFolderError, PublishConflictError
from ..layout import README, shard_glob
from ..manifest import write_manifest
from ..output import refuse_overlap, replacing
from ..remote_read import list_prepared, local_copy, refuse_foreign
from ..storage import is_url
from ..validate import validate_prepared
from ..validate.prepared_folder import refuse_special_files
from .plan import LocalFile, PublishPlan, RemoteState, local_files, make_plan, remote_state
from .preflight import bound_hub_requests, check_hub, check_repo_id, hub_errors

logger = logging.getLogger(__name__)

DRY_RUN = "publish --dry-run"  # the kind of folder in its manifest
# Rows per split that the pre-publish validation loads with `datasets` (the footers are checked in full).
VALIDATION_ROWS = 100


@dataclass
class PublishResult:
    """The plan carried out, and the commit it made (None when there was nothing to publish or it was cancelled)."""

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

    The token, its write access and the revision are checked first (`preflight.check_hub`), before a prepared
    folder at a URL is copied. The folder must then pass the prepared checks of `sousa-builder validate` before
    anything is sent or written; when the branch already holds exactly these files, nothing is sent and the
    checks are not run. Configs already on the Hub but not pushed are kept, with their entries in the card.
    Only files this tool writes (`layout.is_ours`) are deleted from the branch.

    Args:
        repo_id (`str`):
            The dataset repo, `NAMESPACE/NAME`; created (private if `private`) when it does not exist.
        prepared (`str` or `os.PathLike`):
            A folder made by `prepare`, or its URL (published from a temporary local copy).
        token (`str`, *optional*):
            A Hub token (default: `HF_TOKEN`, or the one saved by `hf auth login`).
        revision (`str`, *optional*):
            The branch to commit to; it must exist (default `main`).
        private (`bool`, *optional*):
            Create a new repo private.
        create_pr (`bool`, *optional*):
            Open a pull request instead of committing to the branch.
        commit_message (`str`, *optional*):
            Default: which configs and how many rows.
        configs (`Sequence[str]`, *optional*):
            The configs to push (default: all in the folder).
        dry_run_dir (`str` or `os.PathLike`, *optional*):
            Send nothing: write the tree that would be pushed there (no token needed; without network the plan is
            made as against an empty repo).
        confirm (`Callable[[PublishPlan], bool]`, *optional*):
            Sees the plan before anything is uploaded; returning False stops there.
        endpoint (`str`, *optional*):
            The Hub's URL (default: `HF_ENDPOINT`'s).

    Returns:
        [`PublishResult`]: the plan, and the commit or pull request made (none when there was nothing to publish).

    Raises:
        [`~errors.HubAccessError`]:
            A malformed repo id, no token, a refused token, or no write access.
        [`~errors.HubRevisionError`]:
            `revision` does not exist.
        [`~errors.PreparedFolderError`]:
            The folder is not a complete prepared folder, or fails validation.
        [`~errors.PublishConflictError`]:
            The branch moved while publishing; nothing was committed.
        [`~errors.HubConnectionError`], [`~errors.HubRequestError`], [`~errors.StorageConnectionError`]:
            The Hub, or the storage of a `prepared` URL, could not be reached or answered with an error.
    """
    check_repo_id(repo_id)
    api = HfApi(endpoint=endpoint, token=token or get_token())
    if dry_run_dir is None:
        bound_hub_requests()
        check_hub(api, repo_id, revision)  # before any copy or upload
    if is_url(prepared):  # every path checked, foreign objects refused, before anything is copied
        listing = list_prepared(str(prepared))
        refuse_foreign(listing)
        folder: contextlib.AbstractContextManager[Path] = local_copy(listing)
    else:
        folder = contextlib.nullcontext(Path(prepared))
    with folder as local:
        return _publish_folder(api, repo_id, local, revision=revision, private=private, create_pr=create_pr,
                               commit_message=commit_message, configs=configs, dry_run_dir=dry_run_dir,
                               confirm=confirm, shown=str(prepared))  # fmt: skip


def _publish_folder(
    api: HfApi,
    repo_id: str,
    prepared: Path,
    *,
    revision: str | None,
    private: bool,
    create_pr: bool,
    commit_message: str | None,
    configs: Sequence[str] | None,
    dry_run_dir: str | os.PathLike | None,
    confirm: Callable[[PublishPlan], bool] | None,
    shown: str,
) -> PublishResult:
    """`publish` of a local prepared folder, once the Hub has been checked; `shown` names it in messages (the URL
    the user gave, not the temporary copy)."""
    if dry_run_dir is not None:
        refuse_overlap(Path(dry_run_dir), "--dry-run", prepared, "the prepared folder")
    refuse_special_files(prepared)  # before any file is opened: a FIFO would block the first read
    local_infos = read_prepared_infos(prepared, shown)
    prepared_card = (prepared / README).read_bytes()
    local_card = (git_hash(prepared_card), dict(local_infos))
    if configs:
        missing = sorted(set(configs) - set(local_infos))
        if missing:
            raise PreparedFolderError(f"{shown} has no config {', '.join(missing)} to publish")
        local_infos = {name: info for name, info in local_infos.items() if name in configs}
    try:
        with hub_errors(repo_id, api.endpoint):
            remote = remote_state(api, repo_id, revision, local_card)
    except HubConnectionError:
        if dry_run_dir is None:
            raise
        logger.warning("could not reach the Hub at %s: planned as against an empty repo", api.endpoint)
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

    check_prepared(prepared, shown)
    if dry_run_dir is not None:
        _write_tree(local, Path(dry_run_dir))
        return PublishResult(plan)
    if confirm is not None and not confirm(plan):
        return PublishResult(plan, cancelled=True)
    additions = [_addition(f) for f in local if f.path in {*plan.add, *plan.replace}]
    with hub_errors(repo_id, api.endpoint):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
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


def read_prepared_infos(prepared: Path, shown: str | None = None) -> dict[str, DatasetInfo]:
    """The configs a prepared folder's README describes, each with a shard for every split it lists.

    Args:
        prepared (`Path`):
            A folder made by `prepare`.
        shown (`str`, *optional*):
            How messages name the folder (the URL of a temporary local copy); default `prepared`.

    Returns:
        `dict[str, DatasetInfo]`: config name -> info (features, splits, sizes), from the README's YAML.

    Raises:
        [`~errors.PreparedFolderError`]:
            No README, configs this tool does not make, or a split without a shard.
    """
    readme, base = prepared / README, shown or str(prepared)
    if not readme.is_file():
        raise PreparedFolderError(f"{base}/{README}: missing; run `sousa-builder prepare` to make a prepared folder")
    infos = card_infos(readme.read_text(encoding="utf-8"))
    unknown = sorted(set(infos) - set(config_names()))
    if not infos or unknown:
        raise PreparedFolderError(
            f"{base}/{README}: dataset_info lists {unknown or 'no'} config(s) that this tool makes"
        )
    for name, info in infos.items():
        for split in info.splits or {}:
            if not list((prepared / name).glob(shard_glob(split))):
                raise PreparedFolderError(f"{base}/{name}: no shard for split {split!r} that the README lists")
    return infos


def check_prepared(prepared: Path, shown: str | None = None) -> None:
    """Run the prepared-folder checks of `sousa-builder validate` (loading `VALIDATION_ROWS` rows a split).

    Args:
        prepared (`Path`):
            A folder made by `prepare`.
        shown (`str`, *optional*):
            How messages name the folder (the URL of a temporary local copy); default `prepared`.

    Raises:
        [`~errors.PreparedFolderError`]:
            A check failed; the message names the failed checks.
    """
    report = validate_prepared(prepared, sample=VALIDATION_ROWS)
    report.target = shown or str(prepared)
    report.refuse_if_failed(PreparedFolderError, f"sousa-builder validate --prepared {report.target}")
    logger.info("validated %s: %d checks, no failure", report.target, len(report.checks))


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
