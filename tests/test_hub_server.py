"""The unmodified huggingface_hub and datasets clients against the FakeHub of tests/hub_server.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
import pytest
from hub_server import DEFAULT_TOKEN, FakeHub, XetStore, hub_fixture  # noqa: F401
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

REPO = "alice/drums"
BOTH_PATHS = pytest.mark.parametrize("hub", ["lfs", "xet"], indirect=True)  # plain LFS, or hf_xet + local:// CAS
XET = pytest.mark.parametrize("hub", ["xet"], indirect=True)
README = """---
configs:
- config_name: tiny
  data_files:
  - split: train
    path: tiny/train-*
  - split: test
    path: tiny/test-*
  default: true
- config_name: other
  data_files:
  - split: train
    path: other/train-*
---
# Drums
"""
# tiny: train 3 rows, test 2 rows; other: train 1 row.
ROWS = {
    "tiny/train": {"rudiment": ["flam", "drag", "roll"], "bpm": [60, 90, 120]},
    "tiny/test": {"rudiment": ["ratamacue", "paradiddle"], "bpm": [100, 140]},
    "other/train": {"rudiment": ["single"], "bpm": [80]},
}


def parquet(rows: dict[str, list], tmp_path: Path) -> bytes:
    """A small Parquet file written by `datasets`."""
    path = tmp_path / f"{hashlib.sha1(repr(rows).encode()).hexdigest()}.parquet"
    datasets.Dataset.from_dict(rows).to_parquet(str(path))
    return path.read_bytes()


def dataset_ops(tmp_path: Path, rows: dict[str, dict[str, list]] = ROWS) -> list[CommitOperationAdd]:
    """README.md plus one `{config}/{split}-00000-of-00001.parquet` per entry of `rows`."""
    ops = [CommitOperationAdd("README.md", README.encode())]
    for name, table in rows.items():
        ops.append(CommitOperationAdd(f"{name}-00000-of-00001.parquet", parquet(table, tmp_path)))
    return ops


def publish(hub: FakeHub, tmp_path: Path) -> str:
    """Create the dataset repo and commit README + parquet files in one commit; returns the commit id."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset", exist_ok=True)
    return api.create_commit(REPO, dataset_ops(tmp_path), commit_message="publish", repo_type="dataset").oid


def test_create_repo_and_one_commit_with_lfs(hub: FakeHub, tmp_path: Path) -> None:
    api = HfApi()
    url = api.create_repo(REPO, repo_type="dataset")
    assert url.repo_id == REPO and api.create_repo(REPO, repo_type="dataset", exist_ok=True) == url
    assert api.whoami()["name"] == "alice"

    oid = api.create_commit(REPO, dataset_ops(tmp_path), commit_message="publish", repo_type="dataset").oid

    commit = hub.commits[-1]
    assert (commit.oid, commit.summary, commit.author) == (oid, "publish", "alice")
    assert commit.parent == hub.commits[-2].oid and hub.commits[-2].summary == "initial commit"
    parquets = [f"{name}-00000-of-00001.parquet" for name in ROWS]
    assert commit.added == ("README.md", *parquets) and commit.deleted == ()
    assert {p for p, b in commit.files.items() if b.lfs} == set(parquets)  # README and .gitattributes stay regular
    assert sorted(u.oid for u in hub.lfs_uploads) == sorted(commit.files[p].sha256 for p in parquets)
    # One preupload and one LFS batch call for the whole commit, a PUT and a verify per object, one commit.
    routes = [r.route for r in hub.requests if r.route not in ("repo_info", "whoami", "create_repo")]
    assert routes[:3] == ["validate_yaml", "preupload", "lfs_batch"] and routes[-1] == "commit"
    assert sorted(routes[3:-1]) == ["lfs_upload"] * 3 + ["lfs_verify"] * 3
    assert set(hub.files(REPO)) == {".gitattributes", "README.md", *parquets}

    assert sorted(api.list_repo_files(REPO, repo_type="dataset")) == sorted(hub.files(REPO))
    tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)}
    assert {"tiny", "other"} <= set(tree) and tree["tiny/test-00000-of-00001.parquet"].lfs is not None
    info = api.dataset_info(REPO, files_metadata=True)
    assert info.sha == oid and not info.private and {s.rfilename for s in info.siblings} == set(hub.files(REPO))


def test_identical_recommit_uploads_nothing_and_changed_files_only(hub: FakeHub, tmp_path: Path) -> None:
    first = publish(hub, tmp_path)
    uploads, commits, puts = len(hub.lfs_uploads), len(hub.commits), len(hub.requests_for("lfs_upload"))

    again = HfApi().create_commit(REPO, dataset_ops(tmp_path), commit_message="again", repo_type="dataset")
    assert again.oid == first and len(hub.commits) == commits  # every file unchanged: the client skips the commit
    assert hub.requests_for("lfs_batch")[-1].status == 200  # asked, and told "already stored" for every object
    assert len(hub.lfs_uploads) == uploads and len(hub.requests_for("lfs_upload")) == puts

    ops = dataset_ops(tmp_path)
    ops[0] = CommitOperationAdd("README.md", README.replace("# Drums", "# Drum rudiments").encode())
    HfApi().create_commit(REPO, ops, commit_message="new card", repo_type="dataset")
    assert hub.commits[-1].added == ("README.md",) and len(hub.lfs_uploads) == uploads


def test_delete_file_and_folder_in_the_same_commit(hub: FakeHub, tmp_path: Path) -> None:
    hub.create_repo(REPO)  # seeded server-side: no request, and its LFS objects count as stored
    hub.commit_files(REPO, {op.path_in_repo: op.path_or_fileobj for op in dataset_ops(tmp_path)})  # type: ignore[misc]
    assert hub.requests == [] and {b.lfs for b in hub.head(REPO).files.values()} == {True, False}
    new_train = parquet({"rudiment": ["flam"], "bpm": [70]}, tmp_path)
    ops = [
        CommitOperationDelete("other/"),
        CommitOperationDelete("tiny/test-00000-of-00001.parquet"),
        CommitOperationAdd("tiny/train-00000-of-00001.parquet", new_train),
    ]
    HfApi().create_commit(REPO, ops, commit_message="prune", repo_type="dataset")

    commit = hub.commits[-1]
    assert commit.deleted == ("other/", "tiny/test-00000-of-00001.parquet")
    assert commit.added == ("tiny/train-00000-of-00001.parquet",)
    assert hub.files(REPO) == {
        ".gitattributes": hub.files(REPO)[".gitattributes"],
        "README.md": README.encode(),
        "tiny/train-00000-of-00001.parquet": new_train,
    }
    with pytest.raises(HfHubHTTPError, match="doesn't exist"):
        HfApi().create_commit(REPO, [CommitOperationDelete("nope.txt")], commit_message="x", repo_type="dataset")


def test_failed_upload_leaves_main_unchanged_and_rerun_uploads_only_missing(hub: FakeHub, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    head = hub.head(REPO).oid
    rows = {f"tiny/train-{i}": {"rudiment": ["flam"] * (i + 1), "bpm": [i] * (i + 1)} for i in range(4)}
    hub.fail_lfs_uploads_after(2, status=403)  # 4xx: no client retry, so the failure is immediate

    with pytest.raises(RuntimeError, match="Error while uploading"):
        api.create_commit(REPO, dataset_ops(tmp_path, rows), commit_message="publish", repo_type="dataset")
    assert hub.head(REPO).oid == head and hub.requests_for("commit") == []
    first = {u.oid for u in hub.lfs_uploads}
    assert len(first) == 2 and [r.status for r in hub.requests_for("lfs_upload")].count(403) == 2

    hub.clear_faults()
    api.create_commit(REPO, dataset_ops(tmp_path, rows), commit_message="publish", repo_type="dataset")
    second = {u.oid for u in hub.lfs_uploads} - first
    assert len(hub.lfs_uploads) == 4 and len(second) == 2  # only the two missing objects were sent
    assert {b.sha256 for b in hub.head(REPO).files.values() if b.lfs} == first | second


def test_dropped_connection_is_retried_by_the_client(hub: FakeHub, tmp_path: Path) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    fault = hub.fail_lfs_uploads_after(0, times=1, drop=True)  # costs the client's 1 s backoff
    op = CommitOperationAdd("tiny/train-00000-of-00001.parquet", parquet(ROWS["tiny/train"], tmp_path))
    HfApi().create_commit(REPO, [op], commit_message="one file", repo_type="dataset")
    assert fault.fired == 1 and [r.status for r in hub.requests_for("lfs_upload")] == [0, 200]
    assert hub.commits[-1].added == ("tiny/train-00000-of-00001.parquet",)


def test_lost_commit_reply_then_rerun_is_a_no_op(hub: FakeHub, tmp_path: Path) -> None:
    first = publish(hub, tmp_path)
    ops = dataset_ops(tmp_path, {"tiny/train": {"rudiment": ["flam"], "bpm": [1]}})
    hub.inject_fault("commit", times=1, drop=True, apply_first=True)  # the commit lands, its reply is lost
    with pytest.raises(Exception) as lost:  # the commit POST is not retried: the transport error surfaces
        HfApi().create_commit(REPO, ops, commit_message="update", repo_type="dataset")
    assert not isinstance(lost.value, HfHubHTTPError) and hub.head(REPO).parent == first

    ops = dataset_ops(tmp_path, {"tiny/train": {"rudiment": ["flam"], "bpm": [1]}})
    rerun = HfApi().create_commit(REPO, ops, commit_message="update", repo_type="dataset")
    assert rerun.oid == hub.head(REPO).oid  # every file already there: the client sends no commit at all
    assert [r.status for r in hub.requests_for("commit")] == [200, 0]


def test_multipart_lfs_upload(hub: FakeHub, tmp_path: Path) -> None:
    hub.multipart_chunk_size = 1000
    data = bytes(range(256)) * 10  # 2560 bytes: 3 parts
    HfApi().create_repo(REPO, repo_type="dataset")
    HfApi().create_commit(REPO, [CommitOperationAdd("blob.bin", data)], commit_message="big", repo_type="dataset")
    assert [r.route for r in hub.requests if r.method == "PUT"] == ["lfs_upload"] * 3
    assert hub.files(REPO)["blob.bin"] == data and hub.lfs_uploads[-1].size == len(data)


def test_auth_errors(hub: FakeHub, tmp_path: Path) -> None:
    bob = hub.add_user("bob")
    reader = hub.add_user("carol", token="hf_carol_read", orgs=["sousa-org"], role="read")
    publish(hub, tmp_path)
    HfApi().create_repo("alice/secret", repo_type="dataset", private=True)

    with pytest.raises(HfHubHTTPError, match="Invalid user token") as bad:
        HfApi(token="hf_wrong").whoami()
    assert bad.value.response.status_code == 401
    for token in ("hf_wrong", False):  # a bad token, no token
        with pytest.raises(HfHubHTTPError) as bad:
            HfApi(token=token).create_repo("alice/x", repo_type="dataset")
        assert bad.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as forbidden:
        HfApi().create_repo("bob/stolen", repo_type="dataset")
    assert forbidden.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as forbidden:
        HfApi(token=bob.token).create_commit(REPO, dataset_ops(tmp_path), commit_message="x", repo_type="dataset")
    assert forbidden.value.response.status_code == 403
    HfApi().create_repo("sousa-org/shared", repo_type="dataset")  # alice writes to her org, carol only reads it
    with pytest.raises(HfHubHTTPError) as forbidden:
        ops = [CommitOperationAdd("x.txt", b"x")]
        HfApi(token=reader.token).create_commit("sousa-org/shared", ops, commit_message="x", repo_type="dataset")
    assert forbidden.value.response.status_code == 403
    assert HfApi(token=bob.token).dataset_info(REPO).id == REPO  # public: visible to others
    for token, status in ((bob.token, 404), (False, 401)):
        with pytest.raises(RepositoryNotFoundError) as hidden:
            HfApi(token=token).dataset_info("alice/secret")
        assert hidden.value.response.status_code == status
    assert HfApi().dataset_info("alice/secret").private


def test_revisions_branches_pull_requests_and_stale_parent(hub: FakeHub, tmp_path: Path) -> None:
    api = HfApi()
    first = publish(hub, tmp_path)
    api.create_branch(REPO, branch="dev", repo_type="dataset")
    notes = [CommitOperationAdd("notes.txt", b"dev only")]
    api.create_commit(REPO, notes, commit_message="dev", repo_type="dataset", revision="dev")
    assert "notes.txt" in hub.files(REPO, "dev") and hub.head(REPO).oid == first

    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(REPO, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "README.md", repo_type="dataset", revision="nope")
    assert hub.requests[-1].status == 404

    notes = [CommitOperationAdd("notes.txt", b"via a pull request")]
    pr = api.create_commit(REPO, notes, commit_message="pr", repo_type="dataset", create_pr=True)
    assert pr.pr_url.endswith("/discussions/1") and "notes.txt" in hub.files(REPO, "refs/pr/1")
    assert hub.head(REPO).oid == first and pr.oid == hub.repo(REPO).refs["refs/pr/1"]
    assert [b.name for b in api.list_repo_refs(REPO, repo_type="dataset").branches] == ["dev", "main"]

    ops = [CommitOperationAdd("late.txt", b"late")]
    api.create_commit(REPO, [CommitOperationAdd("x.txt", b"x")], commit_message="moves main", repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(REPO, ops, commit_message="stale", repo_type="dataset", parent_commit=first)
    assert stale.value.response.status_code == 412


@BOTH_PATHS
def test_load_dataset_by_config_and_streaming(hub: FakeHub, tmp_path: Path) -> None:
    publish(hub, tmp_path)
    published = len(hub.requests)
    loaded = datasets.load_dataset(REPO, "tiny")
    assert {split: ds.to_dict() for split, ds in loaded.items()} == {s: ROWS[f"tiny/{s}"] for s in ("train", "test")}
    other = datasets.load_dataset(REPO, "other", split="train")
    assert other.to_dict() == ROWS["other/train"]

    streamed = datasets.load_dataset(REPO, "tiny", split="test", streaming=True)
    assert [row["rudiment"] for row in streamed] == ROWS["tiny/test"]["rudiment"]
    assert all(r.user == "alice" for r in hub.requests[published:])  # datasets sends the HF_TOKEN


@BOTH_PATHS
def test_hf_hub_download_and_range_reads(hub: FakeHub, tmp_path: Path) -> None:
    publish(hub, tmp_path)
    name = "tiny/train-00000-of-00001.parquet"
    data = hub.files(REPO)[name]
    local = hf_hub_download(REPO, name, repo_type="dataset")
    assert Path(local).read_bytes() == data

    fs = HfFileSystem()
    names = [f"datasets/{REPO}/tiny/{split}-00000-of-00001.parquet" for split in ("test", "train")]
    assert sorted(fs.ls(f"datasets/{REPO}/tiny", detail=False)) == names
    with fs.open(f"datasets/{REPO}/{name}", "rb", block_size=16) as f:
        f.seek(4)
        assert f.read(8) == data[4:12]
    ranged = [r for r in hub.requests_for("resolve") if r.status == 206]
    assert ranged and fs.info(f"datasets/{REPO}/{name}")["size"] == len(data)
    assert fs.cat_file(f"datasets/{REPO}/{name}", start=-4) == data[-4:]  # the parquet footer magic
    assert HfApi(token=DEFAULT_TOKEN).file_exists(REPO, name, repo_type="dataset")


@XET
def test_xet_commit_goes_through_the_cas_and_downloads_come_back_through_it(hub: FakeHub, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    api.create_commit(REPO, dataset_ops(tmp_path), commit_message="publish", repo_type="dataset")

    # One preupload, one write token for the hf_xet upload (to the local:// CAS, no HTTP), one commit; no LFS.
    routes = [r.route for r in hub.requests if r.route not in ("repo_info", "whoami", "create_repo")]
    assert routes == ["validate_yaml", "preupload", "xet_token", "commit"]
    assert hub.requests_for("xet_token")[0].path == f"/api/datasets/{REPO}/xet-write-token/main"
    assert hub.lfs_uploads == [] and hub.repo(REPO).lfs_objects == {}
    commit = hub.commits[-1]
    parquets = {p: b for p, b in commit.files.items() if b.lfs}
    assert set(parquets) == {f"{name}-00000-of-00001.parquet" for name in ROWS}
    uploads = {u.sha256: u for u in hub.xet_uploads()}
    assert sorted(uploads) == sorted(b.sha256 for b in parquets.values())
    assert all(b.xet_hash == uploads[b.sha256].xet_hash and b.size == uploads[b.sha256].size for b in parquets.values())
    tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True) if e.path in parquets}
    assert {p: e.xet_hash for p, e in tree.items()} == {p: b.xet_hash for p, b in parquets.items()}

    name, before = "tiny/train-00000-of-00001.parquet", len(hub.requests)
    assert Path(hf_hub_download(REPO, name, repo_type="dataset")).read_bytes() == parquets[name].data
    downloads = [(r.method, r.route) for r in hub.requests[before:]]
    assert downloads == [("HEAD", "resolve"), ("GET", "xet_token")]  # the bytes came from the CAS, through hf_xet
    assert hub.requests[-1].path == f"/api/datasets/{REPO}/xet-read-token/{commit.oid}"


@XET
def test_xet_recommit_stores_nothing_new(hub: FakeHub, tmp_path: Path) -> None:
    first = publish(hub, tmp_path)
    stored, commits = hub.xet_uploads(), len(hub.commits)

    again = HfApi().create_commit(REPO, dataset_ops(tmp_path), commit_message="again", repo_type="dataset")
    assert again.oid == first and len(hub.commits) == commits  # every file unchanged: the client skips the commit
    assert hub.xet_uploads() == stored  # hf_xet ran again (dedup is its business): no file new to the store

    ops = dataset_ops(tmp_path)
    ops[0] = CommitOperationAdd("README.md", README.replace("# Drums", "# Drum rudiments").encode())
    HfApi().create_commit(REPO, ops, commit_message="new card", repo_type="dataset")
    assert hub.commits[-1].added == ("README.md",) and hub.xet_uploads() == stored


@XET
def test_xet_token_refused_leaves_main_unchanged(hub: FakeHub, tmp_path: Path) -> None:
    HfApi().create_repo(REPO, repo_type="dataset")
    head = hub.head(REPO).oid
    hub.inject_fault("xet_token", times=1, status=403)
    with pytest.raises(Exception, match="403"):  # noqa: B017 - hf_xet raises a ConnectionError naming the status
        HfApi().create_commit(REPO, dataset_ops(tmp_path), commit_message="publish", repo_type="dataset")
    assert hub.head(REPO).oid == head and hub.requests_for("commit") == [] and hub.xet_uploads() == []

    publish(hub, tmp_path)
    assert len(hub.xet_uploads()) == len(ROWS) and hub.head(REPO).parent == head


def test_xet_token_route_rights(hub: FakeHub) -> None:
    from huggingface_hub.utils import get_session

    reader = hub.add_user("carol", token="hf_carol_read", orgs=["sousa-org"], role="read")
    hub.create_repo("sousa-org/shared")
    url = f"{hub.url}/api/datasets/sousa-org/shared/xet-write-token/main"
    assert get_session().get(url, headers={"Authorization": f"Bearer {reader.token}"}).status_code == 403
    read = get_session().get(url.replace("write", "read"), headers={"Authorization": f"Bearer {reader.token}"})
    assert read.status_code == 404 and "not enabled" in read.text  # this hub serves plain LFS only


@XET
def test_xet_token_route_answers_the_cas_endpoint(hub: FakeHub) -> None:
    from huggingface_hub.utils import get_session

    hub.create_repo(REPO)
    answer = get_session().get(
        f"{hub.url}/api/datasets/{REPO}/xet-write-token/main", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    )
    assert answer.status_code == 200 and hub.xet is not None
    assert answer.headers["X-Xet-Cas-Url"] == answer.json()["casUrl"] == f"local://{hub.xet.root}"
    assert answer.headers["X-Xet-Access-Token"] == answer.json()["accessToken"]


def test_xet_store_names_files_as_hf_xet_does(tmp_path: Path) -> None:
    """The one piece of Xet format the server reads (file hashes in shards) against hf_xet's public API."""
    import random
    import time

    import hf_xet

    files = {"small.bin": b"one chunk" * 100, "big.bin": random.Random(0).randbytes(1 << 20)}  # 1 MiB: many chunks
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    names = {info.hash: name for name, info in zip(files, hf_xet.hash_files([str(tmp_path / n) for n in files]))}
    cas = tmp_path / "cas"
    cas.mkdir()
    session = hf_xet.XetSession()
    with session.new_upload_commit(f"local://{cas}", "token", int(time.time()) + 600) as commit:
        for name in files:
            commit.start_upload_file(str(tmp_path / name))

    store = XetStore(cas)
    found = {u.xet_hash: u for u in store.scan()}
    assert set(found) == set(names) and store.scan() == []  # a second scan finds nothing new
    for xet_hash, upload in found.items():
        data = files[names[xet_hash]]
        assert (upload.sha256, upload.size) == (hashlib.sha256(data).hexdigest(), len(data))
        assert store.lookup(upload.sha256) == (upload, data)
    assert store.lookup("0" * 64) is None
