"""`publish`: the plan, the checks, then one commit (the package docstring says how it stays safe)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetInfo
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.lfs import UploadInfo
from huggingface_hub.utils.sha import git_hash

from ..builder import config_names
from ..card import card_infos, dataset_card_text, label_counts
from ..errors import HubConnectionError, PreparedFolderError, PublishConflictError, SousaError
from ..layout import README, shard_glob
from ..manifest import write_manifest
from ..output import refuse_overlap, replacing
from ..prepared_files import BLOCK_SIZE, RemoteListing, glob_files, list_prepared, read_bytes, refuse_foreign
from ..storage import is_url
from ..validate import validate_prepared
from ..validate.prepared_folder import refuse_special_files
from ..verified_stream import VerifiedReader
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
    folder at a URL is listed. The folder must then pass the prepared checks of `sousa-builder validate` before
    anything is sent or written; when the branch already holds exactly these files, nothing is sent and the
    checks are not run. Configs already on the Hub but not pushed are kept, with their entries in the card.
    Only files this tool writes (`layout.is_ours`) are deleted from the branch.

    Args:
        repo_id (`str`):
            The dataset repo, `NAMESPACE/NAME`; created (private if `private`) when it does not exist.
        prepared (`str` or `os.PathLike`):
            A folder made by `prepare`, or its URL: read where it is, each object streamed from the bucket to the
            Hub and its sha256 checked against the manifest as it goes (a changed object is refused before its last
            bytes are sent, so nothing is committed). Those uploads go through LFS: Xet takes no streams.
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
        check_hub(api, repo_id, revision)  # before anything is read or sent
    listing = None
    if is_url(prepared):  # every path checked, foreign objects refused, before anything is read
        listing = list_prepared(str(prepared))
        refuse_foreign(listing)
    where = listing.url if listing is not None else Path(prepared)
    return _publish_folder(api, repo_id, where, listing, revision=revision, private=private, create_pr=create_pr,
                           commit_message=commit_message, configs=configs, dry_run_dir=dry_run_dir,
                           confirm=confirm)  # fmt: skip


def _publish_folder(
    api: HfApi,
    repo_id: str,
    prepared: Path | str,
    listing: RemoteListing | None,
    *,
    revision: str | None,
    private: bool,
    create_pr: bool,
    commit_message: str | None,
    configs: Sequence[str] | None,
    dry_run_dir: str | os.PathLike | None,
    confirm: Callable[[PublishPlan], bool] | None,
) -> PublishResult:
    """`publish` of a prepared output (a local folder, or a URL with its `listing`), once the Hub has been checked."""
    if listing is None:
        if dry_run_dir is not None:
            refuse_overlap(Path(dry_run_dir), "--dry-run", prepared, "the prepared folder")
        refuse_special_files(prepared)  # before any file is opened: a FIFO would block the first read
    local_infos = read_prepared_infos(prepared)
    prepared_card = read_bytes(prepared, README)
    local_card = (git_hash(prepared_card), dict(local_infos))
    if configs:
        missing = sorted(set(configs) - set(local_infos))
        if missing:
            raise PreparedFolderError(f"{prepared} has no config {', '.join(missing)} to publish")
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
    local = local_files(prepared, card, local_infos, listing)
    plan = make_plan(repo_id, remote, local, pushed_configs=set(local_infos))
    if plan.is_empty and dry_run_dir is None:
        # The branch holds exactly these files already: nothing would be sent, so there is nothing to check.
        logger.info("nothing to publish: %s@%s already holds these files", repo_id, plan.revision)
        return PublishResult(plan)

    # At a URL an object is taken as written by its ETag here: its upload checks the sha256 of every byte it sends.
    check_prepared(prepared, hashed=listing is None)
    if dry_run_dir is not None:
        _write_tree(local, Path(dry_run_dir))
        return PublishResult(plan)
    if confirm is not None and not confirm(plan):
        return PublishResult(plan, cancelled=True)
    additions = [_addition(f) for f in local if f.path in {*plan.add, *plan.replace}]
    with hub_errors(repo_id, api.endpoint), _own_errors(), closing_all(local):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        with _streams_through_lfs(listing is not None):
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


def read_prepared_infos(prepared: Path | str, shown: str | None = None) -> dict[str, DatasetInfo]:
    """The configs a prepared folder's README describes, each with a shard for every split it lists.

    Args:
        prepared (`Path` or `str`):
            A folder made by `prepare`, or its URL.
        shown (`str`, *optional*):
            How messages name the folder; default `prepared`.

    Returns:
        `dict[str, DatasetInfo]`: config name -> info (features, splits, sizes), from the README's YAML.

    Raises:
        [`~errors.PreparedFolderError`]:
            No README, configs this tool does not make, or a split without a shard.
    """
    base = shown or str(prepared)
    try:
        text = read_bytes(prepared, README).decode("utf-8")
    except FileNotFoundError:
        raise PreparedFolderError(
            f"{base}/{README}: missing; run `sousa-builder prepare` to make a prepared folder"
        ) from None
    infos = card_infos(text)
    unknown = sorted(set(infos) - set(config_names()))
    if not infos or unknown:
        raise PreparedFolderError(
            f"{base}/{README}: dataset_info lists {unknown or 'no'} config(s) that this tool makes"
        )
    for name, info in infos.items():
        for split in info.splits or {}:
            if not glob_files(prepared, f"{name}/{shard_glob(split)}"):
                raise PreparedFolderError(f"{base}/{name}: no shard for split {split!r} that the README lists")
    return infos


def check_prepared(prepared: Path | str, shown: str | None = None, hashed: bool = True) -> None:
    """Run the prepared-folder checks of `sousa-builder validate` (loading `VALIDATION_ROWS` rows a split).

    Args:
        prepared (`Path` or `str`):
            A folder made by `prepare`, or its URL.
        shown (`str`, *optional*):
            How messages name the folder; default `prepared`.
        hashed (`bool`):
            At a URL, read every object's sha256 (see `validate_prepared`).

    Raises:
        [`~errors.PreparedFolderError`]:
            A check failed; the message names the failed checks.
    """
    report = validate_prepared(prepared, sample=VALIDATION_ROWS, hashed=hashed)
    report.target = shown or str(prepared)
    report.refuse_if_failed(PreparedFolderError, f"sousa-builder validate --prepared {report.target}")
    logger.info("validated %s: %d checks, no failure", report.target, len(report.checks))


def _addition(f: LocalFile) -> CommitOperationAdd:
    """The commit operation adding `f`, with the sha256 already computed (the client would read the file again:
    `UploadInfo.sha256` is computed lazily and settable since huggingface_hub 1.x).

    An object at a URL is given as its `VerifiedReader`, with the size and sha256 of the manifest: built from a file
    object, `CommitOperationAdd` would read the whole object to hash it, so it is built empty and given the stream
    and its `UploadInfo` (the first 512 bytes, which the Hub reads to choose LFS, are fetched alone)."""
    if isinstance(f.source, VerifiedReader):
        operation = CommitOperationAdd(f.path, b"")
        operation.path_or_fileobj = f.source
        operation.upload_info = UploadInfo(size=f.size, sample=f.source.head(), sha256=bytes.fromhex(f.sha256))
        return operation
    operation = CommitOperationAdd(f.path, f.source if isinstance(f.source, bytes) else str(f.source))
    operation.upload_info.sha256 = bytes.fromhex(f.sha256)
    return operation


@contextlib.contextmanager
def _own_errors() -> Iterator[None]:
    """Let the package's own errors through the Hub client, which wraps what fails in an upload in a RuntimeError
    ("Error while uploading ..."): a changed object or an unreachable bucket is named as it is."""
    try:
        yield
    except SousaError:
        raise
    except Exception as err:
        cause = err.__cause__ or err.__context__
        while cause is not None and not isinstance(cause, SousaError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None


@contextlib.contextmanager
def _streams_through_lfs(streamed: bool) -> Iterator[None]:
    """Say once that the uploads of streamed objects go through LFS (huggingface_hub sends no file object through
    Xet, and warns of it for every call), and keep its own warning out of the user's stderr."""
    if not streamed:
        yield
        return
    logger.info("uploading the objects as streams from the bucket, through LFS (Xet takes no streams)")
    client = logging.getLogger("huggingface_hub._commit_api")
    level = client.level
    client.setLevel(logging.ERROR)
    try:
        yield
    finally:
        client.setLevel(level)


@contextlib.contextmanager
def closing_all(files: Sequence[LocalFile]) -> Iterator[None]:
    """Close the streams of `files` (objects read from a bucket) after the block."""
    try:
        yield
    finally:
        for f in files:
            if isinstance(f.source, VerifiedReader):
                f.source.close()


def _write_tree(local: list[LocalFile], target: Path) -> None:
    """Write the files that would be pushed into `target` (replacing only an earlier dry run there)."""
    with replacing(target.absolute(), DRY_RUN, "--dry-run") as staging:
        for f in local:
            destination = staging.path / f.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(f.source, bytes):
                destination.write_bytes(f.source)
            elif isinstance(f.source, VerifiedReader):  # streamed from the bucket, checked as it is read
                with f.source, destination.open("wb") as target:
                    shutil.copyfileobj(f.source, target, BLOCK_SIZE)
            else:
                shutil.copyfile(f.source, destination)
        write_manifest(staging.path, DRY_RUN, known={f.path: f.sha256 for f in local})


def _commit_message(infos: dict[str, DatasetInfo]) -> str:
    rows = ", ".join(
        f"{name}: {sum(s.num_examples for s in info.splits.values())} rows" for name, info in infos.items()
    )
    return f"Publish SOUSA ({rows})"
