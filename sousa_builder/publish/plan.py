"""What a publish changes on the branch: the remote state, the local files, and the plan between them."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from datasets import DatasetInfo
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils.sha import git_hash

from ..card import card_infos
from ..errors import HubRevisionError
from ..hashes import file_sha256s
from ..layout import AUXILIARY_TABLES, README, auxiliary_path, holds_older_layout, is_ours, shard_glob
from ..prepared_files import RemoteListing, glob_files
from ..verified_stream import VerifiedReader

logger = logging.getLogger(__name__)


@dataclass
class PublishPlan:
    """What a publish would change on the branch, file by file (paths in the repo)."""

    repo_id: str
    revision: str
    parent_commit: str | None
    add: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    bytes_to_send: int = 0

    @property
    def is_empty(self) -> bool:
        """Whether the publish changes nothing: no file to add, replace or delete."""
        return not (self.add or self.replace or self.delete)

    def summary(self) -> str:
        """A human-readable plan, one section per action."""
        lines = [f"plan for {self.repo_id}@{self.revision}:"]
        for title, paths in (("add", self.add), ("replace", self.replace), ("delete", self.delete)):
            lines.append(f"  {title}: {len(paths)} file(s)")
            lines += [f"    {path}" for path in paths]
        lines.append(f"  unchanged: {len(self.unchanged)} file(s); kept as they are: {len(self.kept)} file(s)")
        lines.append(f"  bytes to send: {self.bytes_to_send:,}")
        return "\n".join(lines)


@dataclass
class LocalFile:
    """A file to push: its path in the repo, where its bytes are (a local file, bytes, or an object of a prepared
    output at a URL, streamed and checked against its manifest as it is sent), and its hashes."""

    path: str
    source: Path | bytes | VerifiedReader
    size: int
    sha256: str
    git_sha1: str


@dataclass
class RemoteState:
    """The branch as it is: its commit, files and card infos."""

    revision: str
    sha: str | None
    files: dict[str, tuple[str, int]]  # path -> (sha256 for LFS files or git sha1, size)
    infos: dict[str, DatasetInfo]


def remote_state(
    api: HfApi, repo_id: str, revision: str | None, local_card: tuple[str, dict[str, DatasetInfo]]
) -> RemoteState:
    """The branch's commit, files (with content hashes) and card infos; empty for a repo not created yet.

    `local_card` is the git sha1 of the prepared folder's README and its infos: a remote card with that
    sha1 is that card, and is not downloaded.
    """
    try:
        info = api.repo_info(repo_id, repo_type="dataset", revision=revision)
    except RevisionNotFoundError as err:
        raise HubRevisionError(
            f"revision {revision!r} does not exist in dataset {repo_id}; create the branch first or omit --revision"
        ) from err
    except RepositoryNotFoundError:
        return RemoteState(revision or "main", None, {}, {})
    files = {}
    for entry in api.list_repo_tree(repo_id, repo_type="dataset", revision=info.sha, recursive=True):
        if isinstance(entry, RepoFile):
            files[entry.path] = (entry.lfs.sha256 if entry.lfs else entry.blob_id, entry.size)
    infos = {}
    if README in files and files[README][0] == local_card[0]:
        infos = local_card[1]
    elif README in files:
        try:
            card = Path(api.hf_hub_download(repo_id, README, repo_type="dataset", revision=info.sha))
            infos = card_infos(card.read_text(encoding="utf-8"), ignore_metadata_errors=True)
        except (EntryNotFoundError, ValueError, UnicodeDecodeError, yaml.YAMLError) as err:
            logger.warning("ignoring the card of %s: %s", repo_id, err)
    return RemoteState(revision or "main", info.sha, files, infos)


def local_files(
    prepared: Path | str, card: bytes, infos: dict[str, DatasetInfo], listing: RemoteListing | None = None
) -> list[LocalFile]:
    """The files to push: the shards of the configs in `infos`, the auxiliary tables, and the card.

    Args:
        prepared (`Path` or `str`):
            The prepared output: a local folder, or a URL (then `listing` lists it).
        card (`bytes`):
            The card to push as README.md.
        infos (`dict[str, DatasetInfo]`):
            The configs to push.
        listing ([`~prepared_files.RemoteListing`], *optional*):
            The objects and manifest of a URL `prepared`: their sizes and sha256 are the manifest's (nothing is read
            here), and each is streamed from the bucket as it is sent.

    Returns:
        `list[LocalFile]`: the card first, then the shards and the auxiliary tables present.
    """
    local = [LocalFile(README, card, len(card), hashlib.sha256(card).hexdigest(), git_hash(card))]
    shards = [relative for config in infos for relative in glob_files(prepared, f"{config}/{shard_glob('*')}")]
    auxiliary = [auxiliary_path(table) for table in AUXILIARY_TABLES]
    if listing is not None and listing.manifest is not None:
        manifest = listing.manifest.files
        for relative in [*shards, *(path for path in auxiliary if path in listing.objects)]:
            entry = manifest[relative]  # `refuse_foreign`: every object is in the manifest
            stream = VerifiedReader(listing.url, relative, entry)
            local.append(LocalFile(relative, stream, entry.size, entry.sha256, ""))
        return local
    paths = [prepared / relative for relative in shards]
    paths += [path for path in (prepared / relative for relative in auxiliary) if path.is_file()]
    for path, (sha256, size) in zip(paths, file_sha256s(paths)):
        local.append(LocalFile(path.relative_to(prepared).as_posix(), path, size, sha256, ""))
    return local


def make_plan(repo_id: str, remote: RemoteState, local: list[LocalFile], pushed_configs: set[str]) -> PublishPlan:
    """What a publish of `local` changes on the branch in `remote`, file by file.

    A file whose hash (sha256 of an LFS file, or git sha1) is the remote one is unchanged. A remote file that
    `local` lacks is deleted only if this tool writes such a name for a config pushed now (`layout.is_ours`);
    every other file of the repo is kept.

    Args:
        repo_id (`str`):
            The dataset repo, e.g. "user/sousa".
        remote ([`RemoteState`]):
            The branch as it is (`remote_state`).
        local (`list[LocalFile]`):
            The files to push (`local_files`).
        pushed_configs (`set[str]`):
            The configs pushed now: only their shards (and the tool's own files) may be deleted.

    Returns:
        [`PublishPlan`]: the files to add, replace, delete, keep and leave unchanged, and the bytes to send.
    """
    plan = PublishPlan(repo_id, remote.revision, remote.sha)
    for f in local:
        remote_file = remote.files.get(f.path)
        if remote_file is None:
            plan.add.append(f.path)
        elif remote_file[0] in (f.sha256, f.git_sha1):
            plan.unchanged.append(f.path)
            continue
        else:
            plan.replace.append(f.path)
        plan.bytes_to_send += f.size
    local_paths = {f.path for f in local}
    older_layout = holds_older_layout(remote.files)
    for path in sorted(remote.files):
        if path in local_paths:
            continue
        # Deleted only if this tool wrote it (`layout.is_ours`): every other file of the repo is kept.
        (plan.delete if is_ours(path, pushed_configs, older_layout) else plan.kept).append(path)
    return plan
