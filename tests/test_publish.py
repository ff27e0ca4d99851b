"""Publishing to a Hub: the unmodified huggingface_hub / datasets clients against the FakeHub on 127.0.0.1.

Assertions are on the server's record (commits, LFS uploads, trees), not only on return values.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import DEFAULT_TOKEN, FakeHub, hub_fixture, point_clients_at  # noqa: F401
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError

from sousa_builder.cli import main
from sousa_builder.errors import HubAccessError, HubRevisionError, PreparedFolderError, PublishConflictError
from sousa_builder.prepare import prepare
from sousa_builder.publish import publish

REPO = "alice/sousa"
# Users with hf_xet installed upload through Xet; the others (and HF_HUB_DISABLE_XET=1) through plain LFS.
BOTH_PATHS = pytest.mark.parametrize("hub", ["lfs", "xet"], indirect=True)
WRITES = ("preupload", "lfs_batch", "lfs_upload", "xet_token", "commit")


def local_tree(prepared: Path) -> dict[str, bytes]:
    """What publishing a prepared folder sends: every file but the manifest (.sousa/, kept local)."""
    files = [p for p in prepared.rglob("*") if p.is_file() and p.relative_to(prepared).parts[0] != ".sousa"]
    return {p.relative_to(prepared).as_posix(): p.read_bytes() for p in files}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@BOTH_PATHS
def test_first_publish_then_load_dataset_through_the_hub(hub: FakeHub, prepared_dir: Path) -> None:
    result = publish(REPO, prepared_dir)
    commit = hub.commits[-1]
    assert result.commit_url and commit.summary.startswith("Publish SOUSA (audio: 24 rows")
    assert len([c for c in hub.commits if c.repo_id == REPO]) == 2  # the repo's initial commit, then ours
    expected = local_tree(prepared_dir)
    assert hub.files(REPO) == {".gitattributes": hub.files(REPO)[".gitattributes"], **expected}
    assert sorted(commit.added) == sorted(expected) and commit.deleted == ()
    parquets = {path for path in expected if path.endswith(".parquet")}
    assert sorted(hub.uploaded_oids()) == sorted(sha256(expected[p]) for p in parquets)
    published = len(hub.requests)
    xet = hub.xet is not None
    assert [b.xet_hash is not None for p, b in commit.files.items() if p in parquets] == [xet] * len(parquets)
    assert not hub.lfs_uploads if xet else not hub.requests_for("xet_token")

    for config in ("audio", "midi_only", "labels_only"):
        remote = datasets.load_dataset(REPO, config)
        local = datasets.load_dataset(str(prepared_dir), config)
        assert {s: d.num_rows for s, d in remote.items()} == {s: d.num_rows for s, d in local.items()}
        assert remote["train"].features == local["train"].features
        assert remote["test"].with_format("arrow")[:].equals(local["test"].with_format("arrow")[:])
    stream = datasets.load_dataset(REPO, "labels_only", split="validation", streaming=True)
    assert [row["sample_id"] for row in stream] == local["validation"]["sample_id"]
    read_tokens = [r for r in hub.requests[published:] if r.route == "xet_token"]
    assert bool(read_tokens) == xet and all("/xet-read-token/" in r.path for r in read_tokens)
    for path in parquets:  # the copies in the client's cache (written by hf_xet on the Xet path) are byte-identical
        assert Path(hf_hub_download(REPO, path, repo_type="dataset")).read_bytes() == expected[path]


@BOTH_PATHS
def test_republish_unchanged_sends_nothing(hub: FakeHub, prepared_dir: Path, capsys) -> None:
    publish(REPO, prepared_dir)
    commits, uploads = len(hub.commits), hub.uploaded_oids()
    writes = len(hub.requests_for(*WRITES))
    assert main(["publish", REPO, "--prepared", str(prepared_dir), "--yes"]) == 0
    assert "nothing to publish" in capsys.readouterr().out
    assert (len(hub.commits), hub.uploaded_oids()) == (commits, uploads)
    assert len(hub.requests_for(*WRITES)) == writes  # not even a Xet token: hf_xet never ran


@BOTH_PATHS
def test_changed_source_uploads_only_changed_shards_and_deletes_stale(
    hub: FakeHub, prepared_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    publish(REPO, prepared_dir)
    before = hub.files(REPO)
    uploads_before = len(hub.uploaded_oids())
    # One process instead of two: one shard per split instead of two, the auxiliary tables unchanged.
    again = prepare(sample_dir, tmp_path / "one-shard").out
    result = publish(REPO, again)
    commit = hub.commits[-1]
    new = local_tree(again)
    assert hub.files(REPO) == {".gitattributes": before[".gitattributes"], **new}
    stale = sorted(p for p in before if p not in new and p != ".gitattributes")
    assert stale and sorted(commit.deleted) == stale == sorted(result.plan.delete)  # in the same commit
    sent = set(hub.uploaded_oids()[uploads_before:])
    changed = {sha256(data) for path, data in new.items() if before.get(path) != data and path.endswith(".parquet")}
    assert sent == changed
    assert sha256(new["auxiliary/strokes.parquet"]) not in sent
    assert "auxiliary/strokes.parquet" in result.plan.unchanged


@BOTH_PATHS  # on the Xet path: LFS-only files of the old layout deleted, Xet files added, in one commit
def test_replaces_an_older_layout_in_one_commit(hub: FakeHub, prepared_dir: Path) -> None:
    hub.create_repo(REPO)
    legacy = {
        "audio/beg000_flam_120bpm.flac": b"fLaC old",
        "data/train-00000-of-00001.parquet": b"PAR1 old",
        "midi/beg000_flam_120bpm.mid": b"MThd old",
        "LICENSE": b"MIT",
        "examples/demo.wav": b"RIFF mine",  # a file of the repo owner's: not a layout of this tool
        "audio/notes.txt": b"mine too",
        "root-table.parquet": b"PAR1 mine",
        "audio/train-00000-of-00009.parquet": b"PAR1 an older shard count",  # ours: a shard of a pushed config
        "labels/strokes.parquet": b"PAR1 old",
        # The user's own Parquet files inside folders this tool writes to: they look alike, but are not shards.
        "audio/my_eval_subset.parquet": b"PAR1 mine",
        "auxiliary/my_notes.parquet": b"PAR1 mine",
        "data/2023/backup.parquet": b"PAR1 mine",
        "data/backup.parquet": b"PAR1 mine",
        "labels/my_labels.parquet": b"PAR1 mine",
    }
    kept = {"LICENSE", "examples/demo.wav", "audio/notes.txt", "root-table.parquet", "audio/my_eval_subset.parquet"}
    kept |= {"auxiliary/my_notes.parquet", "data/2023/backup.parquet", "data/backup.parquet"}
    kept |= {"labels/my_labels.parquet"}
    hub.commit_files(REPO, legacy)
    seeded = hub.head(REPO).oid
    result = publish(REPO, prepared_dir)
    commit = hub.commits[-1]
    assert commit.parent == seeded
    assert sorted(commit.deleted) == sorted(p for p in legacy if p not in kept)
    tree = hub.files(REPO)
    assert {p: tree[p] for p in kept} == {p: legacy[p] for p in kept}  # not ours to delete
    assert not [p for p in tree if p.endswith((".flac", ".mid")) or p.startswith("data/train-")]
    assert set(result.plan.kept) == {".gitattributes", *kept}


def test_failed_upload_leaves_main_unchanged_and_rerun_sends_the_rest(hub: FakeHub, prepared_dir: Path) -> None:
    hub.create_repo(REPO)
    head = hub.head(REPO).oid
    hub.fail_lfs_uploads_after(3, status=403)  # a hard failure after three objects
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises, main must not move
        publish(REPO, prepared_dir)
    assert hub.head(REPO).oid == head and set(hub.files(REPO)) == {".gitattributes"}
    first_run = {u.oid for u in hub.lfs_uploads}
    assert len(first_run) == 3

    hub.clear_faults()
    publish(REPO, prepared_dir)
    parquets = {sha256(d) for p, d in local_tree(prepared_dir).items() if p.endswith(".parquet")}
    second_run = [u.oid for u in hub.lfs_uploads[3:]]
    assert sorted(second_run) == sorted(parquets - first_run)  # only what the server did not have
    assert hub.files(REPO).keys() >= local_tree(prepared_dir).keys()


@pytest.mark.parametrize("hub", ["xet"], indirect=True)
def test_failed_xet_upload_leaves_main_unchanged_and_rerun_publishes(hub: FakeHub, prepared_dir: Path) -> None:
    # publish makes one preupload call; the client uploads its files to Xet in one session, with one token.
    hub.create_repo(REPO)
    head = hub.head(REPO).oid
    hub.inject_fault("xet_token", after=0, status=403)  # the upload is refused its token
    with pytest.raises(Exception, match="403"):  # noqa: B017 - hf_xet raises a ConnectionError naming the status
        publish(REPO, prepared_dir)
    assert hub.head(REPO).oid == head and set(hub.files(REPO)) == {".gitattributes"}
    assert hub.uploaded_oids() == []

    hub.clear_faults()
    publish(REPO, prepared_dir)
    parquets = {sha256(d) for p, d in local_tree(prepared_dir).items() if p.endswith(".parquet")}
    assert set(hub.uploaded_oids()) == parquets
    assert hub.files(REPO).keys() >= local_tree(prepared_dir).keys()


def test_subset_of_configs_keeps_the_others(hub: FakeHub, prepared_dir: Path, sample_dir: Path, tmp_path) -> None:
    publish(REPO, prepared_dir)
    before = hub.files(REPO)
    labels = prepare(sample_dir, tmp_path / "labels", configs=["labels_only"]).out
    publish(REPO, labels)
    after = hub.files(REPO)
    for path, data in before.items():
        if path.startswith(("audio/", "midi_only/")):
            assert after[path] == data
    assert not [p for p in after if p.startswith("labels_only/") and p.endswith("-of-00002.parquet")]
    card = after["README.md"].decode()
    for config in ("audio", "midi_only", "labels_only"):
        assert f"config_name: {config}" in card
    # The count tables survive a publish of one config: counted again from the shards that are pushed.
    assert "| skill_tier | train | validation | test | total |" in card and "| beginner | 6 | 0 | 0 | 6 |" in card
    assert "| single_stroke_roll | 4 | 2 | 2 | 8 |" in card
    ds = datasets.load_dataset(REPO, "midi_only", split="train")
    assert ds.num_rows == 12


def test_private_repo(hub: FakeHub, prepared_dir: Path) -> None:
    publish(REPO, prepared_dir, private=True)
    assert hub.repo(REPO).private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).repo_info(REPO, repo_type="dataset")


def test_bad_token_is_refused_and_never_printed(
    hub: FakeHub, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    secret = "hf_not_a_real_token_4242"
    monkeypatch.setenv("HF_TOKEN", secret)
    assert main(["publish", REPO, "--prepared", str(prepared_dir), "--yes"]) == 1
    out, err = capsys.readouterr()
    assert "refused the token" in err
    assert secret not in out + err
    assert not [c for c in hub.commits if c.repo_id == REPO]


def test_missing_token(hub: FakeHub, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubAccessError, match="no Hub token"):
        publish(REPO, prepared_dir)


def test_no_write_access_to_namespace(hub: FakeHub, prepared_dir: Path) -> None:
    with pytest.raises(HubAccessError, match="cannot write to namespace 'bob'"):
        publish("bob/sousa", prepared_dir)
    publish("sousa-org/sousa", prepared_dir)  # alice's organisation is fine
    assert hub.head("sousa-org/sousa").author == "alice"


def test_revision_that_does_not_exist(hub: FakeHub, prepared_dir: Path) -> None:
    hub.create_repo(REPO)
    with pytest.raises(HubRevisionError, match="'v2' does not exist"):
        publish(REPO, prepared_dir, revision="v2")


@BOTH_PATHS
def test_create_pr_leaves_main_alone(hub: FakeHub, prepared_dir: Path) -> None:
    hub.create_repo(REPO)
    head = hub.head(REPO).oid
    result = publish(REPO, prepared_dir, create_pr=True)
    assert result.pull_request_url and hub.head(REPO).oid == head
    assert "README.md" in hub.files(REPO, revision="refs/pr/1")


def test_dry_run_writes_the_tree_and_sends_nothing(hub: FakeHub, sample_dir: Path, tmp_path: Path, capsys) -> None:
    plan_dir = tmp_path / "plan"
    assert main(["publish", REPO, "--data-dir", str(sample_dir), "--dry-run", str(plan_dir)]) == 0
    out = capsys.readouterr().out
    # 3 configs x 3 splits x 1 shard + 2 auxiliary tables + README.md
    assert "add: 12 file(s)" in out and "bytes to send:" in out and "nothing was sent" in out
    assert not hub.commits and not hub.lfs_uploads
    assert not hub.requests_for("create_repo", "preupload", "commit")
    ds = datasets.load_dataset(str(plan_dir), "labels_only")
    assert {s: d.num_rows for s, d in ds.items()} == {"train": 12, "validation": 6, "test": 6}


def test_refuses_a_folder_that_is_not_prepared(hub: FakeHub, prepared_dir: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(prepared_dir, tmp_path / "broken"))
    for shard in (broken / "midi_only").glob("validation-*"):
        shard.unlink()
    with pytest.raises(PreparedFolderError, match="no shard for split 'validation'"):
        publish(REPO, broken)
    assert not hub.commits


def test_python_dash_m_entry_point(hub: FakeHub, prepared_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    # The fixture puts a valid token in HF_TOKEN; the dry run asks the server but must never echo the token.
    plan = tmp_path / "plan"
    command = [sys.executable, "-m", "sousa_builder.publish", REPO, "--prepared", str(prepared_dir), "--dry-run"]
    run = subprocess.run([*command, str(plan)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "add: 21 file(s)" in run.stdout and "nothing was sent" in run.stdout
    assert DEFAULT_TOKEN not in run.stdout + run.stderr
    assert (plan / "README.md").is_file() and not hub.commits
    assert hub.requests_for("repo_info")  # the child process talked to this server


@BOTH_PATHS
def test_branch_moved_while_publishing(hub: FakeHub, prepared_dir: Path) -> None:
    hub.create_repo(REPO)

    def someone_else_commits(plan) -> bool:
        hub.commit_files(REPO, {"NOTES.md": b"meanwhile"})
        return True

    with pytest.raises(PublishConflictError, match="changed while publishing"):
        publish(REPO, prepared_dir, confirm=someone_else_commits)
    assert set(hub.files(REPO)) == {".gitattributes", "NOTES.md"}  # their commit stands, ours was refused
    publish(REPO, prepared_dir)  # the rerun sends no object twice
    assert len(hub.uploaded_oids()) == len(set(hub.uploaded_oids()))
    assert hub.files(REPO)["NOTES.md"] == b"meanwhile"


def test_asks_before_publishing(hub: FakeHub, prepared_dir: Path, capsys) -> None:
    assert main(["publish", REPO, "--prepared", str(prepared_dir)]) == 1  # no terminal under pytest
    out, err = capsys.readouterr()
    assert "add: 21 file(s)" in out and "pass --yes" in err
    with pytest.raises(KeyError):
        hub.repo(REPO)  # not even created


def test_refuses_a_folder_that_fails_validation(hub: FakeHub, prepared_dir: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(prepared_dir, tmp_path / "broken"))
    shard = next((broken / "labels_only").glob("train-*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.append_column("audio_path", pa.array(["audio/x.flac"] * table.num_rows)), shard)
    with pytest.raises(PreparedFolderError, match=r"fails validation(.|\n)*no_path_columns: .*audio_path"):
        publish(REPO, broken, dry_run_dir=tmp_path / "plan")
    assert main(["publish", REPO, "--prepared", str(broken), "--yes"]) == 1
    assert not (tmp_path / "plan").exists()
    assert not hub.requests_for("create_repo", "preupload", "lfs_batch", "commit")


def test_a_shard_changed_after_prepare_is_never_published(hub: FakeHub, prepared_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(prepared_dir, tmp_path / "copy"))
    publish(REPO, folder)  # remembers the hash of every file with its stat
    shard = next((folder / "audio").glob("train-*.parquet"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 32] = bytes(32)  # 32 bytes inside the FLAC data, same size
    shard.write_bytes(bytes(data))
    requests = len(hub.requests)
    with pytest.raises(PreparedFolderError, match=r"audio/train-0000\d-of-00002.parquet: its bytes are not the ones"):
        publish(REPO, folder)
    assert not [r for r in hub.requests[requests:] if r.method != "GET"]  # nothing uploaded, nothing committed


@pytest.mark.parametrize(
    "where", ["prepared", "inside-prepared", "holds-prepared", "source", "inside-source", "git-checkout"]
)
def test_dry_run_never_deletes_what_it_did_not_write(
    hub: FakeHub, prepared_dir: Path, sample_dir: Path, tmp_path: Path, capsys, where: str
) -> None:
    prepared = Path(shutil.copytree(prepared_dir, tmp_path / "work" / "prepared"))
    source = Path(shutil.copytree(sample_dir, tmp_path / "work" / "source"))
    checkout = tmp_path / "work" / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "README.md").write_text("my project")  # a README.md does not make a folder a dry run
    target = {
        "prepared": prepared, "inside-prepared": prepared / "plan", "holds-prepared": tmp_path / "work",
        "source": source, "inside-source": source / "plan", "git-checkout": checkout,
    }[where]  # fmt: skip
    before = {p: p.read_bytes() for p in (tmp_path / "work").rglob("*") if p.is_file()}
    what = ["--data-dir", str(source)] if "source" in where else ["--prepared", str(prepared)]
    assert main(["publish", REPO, *what, "--dry-run", str(target)]) == 1
    err = capsys.readouterr().err
    assert str(target) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in (tmp_path / "work").rglob("*") if p.is_file()} == before
    assert not hub.requests_for("create_repo", "preupload", "commit")


def test_dry_run_replaces_its_own_earlier_tree(hub: FakeHub, prepared_dir: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan"
    assert main(["publish", REPO, "--prepared", str(prepared_dir), "--dry-run", str(plan)]) == 0
    assert main(["publish", REPO, "--prepared", str(prepared_dir), "--dry-run", str(plan)]) == 0
    assert local_tree(plan) == {p: d for p, d in local_tree(prepared_dir).items()}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".plan")]  # no staging or lock left


def test_data_dir_with_broken_media_is_never_published(hub: FakeHub, sample_dir: Path, tmp_path: Path, capsys) -> None:
    source = Path(shutil.copytree(sample_dir, tmp_path / "source"))
    flac = next((source / "audio").rglob("*.flac"))
    flac.write_bytes(b"")
    midi = next((source / "midi").rglob("*.mid"))
    midi.write_bytes(b"garbage")
    assert main(["publish", REPO, "--data-dir", str(source), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "fails validation, so nothing was published" in err and "empty (0 bytes)" in err
    assert "not a MIDI file" in err and "Traceback" not in err
    assert not hub.requests_for("create_repo", "preupload", "commit")


# --- every Hub failure is one line, and nothing is committed ----------------------------------------------------


def publish_fails_with(prepared: Path, capsys: pytest.CaptureFixture[str], *expected: str, repo: str = REPO) -> None:
    assert main(["publish", repo, "--prepared", str(prepared), "--yes"]) == 1
    out, err = capsys.readouterr()
    line = err.strip().splitlines()[-1]
    assert line.startswith("sousa-builder publish: error: ") and "Traceback" not in out + err, err
    for text in expected:
        assert text in line, line


@pytest.mark.parametrize(
    ("route", "status", "expected"),
    [
        ("commit", 503, "the Hub answered 503 (a server error): run again later"),
        ("commit", 401, "the Hub refused the token (invalid, expired or revoked)"),  # revoked while uploading
        ("preupload", 403, f"this token cannot write to {REPO}"),
    ],
)
def test_hub_errors_are_one_line(
    hub: FakeHub, prepared_dir: Path, capsys: pytest.CaptureFixture[str], route: str, status: int, expected: str
) -> None:
    hub.create_repo(REPO)
    head = hub.head(REPO).oid
    hub.inject_fault(route, status=status)
    publish_fails_with(prepared_dir, capsys, expected)
    assert hub.head(REPO).oid == head


def test_a_read_only_token_cannot_write(
    hub: FakeHub, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.create_repo(REPO)
    monkeypatch.setenv("HF_TOKEN", hub.add_user("alice", token="hf_alice_read_only", role="read").token)
    publish_fails_with(prepared_dir, capsys, REPO)
    assert len(hub.commits) == 1  # the repo's initial commit only


@pytest.mark.parametrize("repo_id", ["alice", "a/b/c", "alice/"])
def test_malformed_repo_id(hub: FakeHub, prepared_dir: Path, capsys: pytest.CaptureFixture[str], repo_id: str) -> None:
    publish_fails_with(prepared_dir, capsys, f"repo id {repo_id!r} is malformed: expected NAMESPACE/NAME", repo=repo_id)
    assert not hub.requests


def test_unreachable_hub(
    hub: FakeHub, prepared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    point_clients_at(closed, monkeypatch, tmp_path / "hf-home", token=DEFAULT_TOKEN, xet=False)
    publish_fails_with(prepared_dir, capsys, f"cannot reach the Hub at {closed}", "nothing was committed")
    # A dry run still plans, as against an empty repo, and says the Hub could not be reached.
    plan = tmp_path / "plan"
    assert main(["publish", REPO, "--prepared", str(prepared_dir), "--dry-run", str(plan)]) == 0
    assert "could not reach the Hub" in caplog.text and "add: 21 file(s)" in capsys.readouterr().out  # 3 x 3 x 2 + 3
    assert local_tree(plan).keys() == local_tree(prepared_dir).keys()


def test_upload_urls_stay_out_of_the_log(hub: FakeHub, prepared_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """On the Hub, LFS upload URLs are presigned write URLs: a CI log at INFO must not hold them."""
    caplog.set_level(logging.INFO)  # what the command line logs at
    assert main(["publish", REPO, "--prepared", str(prepared_dir), "--yes"]) == 0
    assert hub.lfs_uploads  # files were uploaded...
    assert not [r for r in caplog.records if "lfs-upload" in r.getMessage()]  # ...and their URLs not logged


# --- the Hub is checked before any work (issue 21) --------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Make any prepare or source check of `publish --data-dir` fail the test; temporary folders go to a fresh one."""
    import sousa_builder.publish.workflow as workflow

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the Hub was checked")

    monkeypatch.setattr(workflow, "prepare", forbidden)
    monkeypatch.setattr(workflow, "check_source", forbidden)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    return temporary


def refused_before_work(argv: list[str], capsys: pytest.CaptureFixture[str], temporary: Path, expected: str) -> None:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert err.startswith("sousa-builder publish: error: ") and expected in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not list(temporary.iterdir())  # no temporary folder, nothing prepared


def test_no_token_fails_before_any_work(
    hub: FakeHub, sample_dir: Path, no_work: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    argv = ["publish", REPO, "--data-dir", str(sample_dir), "--yes"]
    refused_before_work(argv, capsys, no_work, "no Hub token: set HF_TOKEN or log in with `hf auth login`")
    assert not hub.requests  # not even a request


@pytest.mark.parametrize(
    ("repo", "revision", "expected"),
    [
        ("bob/sousa", None, "user 'alice' cannot write to namespace 'bob'"),
        ("alice/new-repo", "dev", "revision 'dev' does not exist: dataset alice/new-repo does not exist yet"),
        (REPO, "dev", f"revision 'dev' does not exist in dataset {REPO}"),  # REPO exists (made below)
        ("alice/a--b", None, "repo id 'alice/a--b' is malformed"),
    ],
    ids=["namespace", "new-repo-revision", "missing-revision", "repo-id"],
)
def test_hub_refusals_come_before_any_work(
    hub: FakeHub, sample_dir: Path, no_work: Path, capsys, repo: str, revision: str | None, expected: str
) -> None:
    hub.create_repo(REPO)
    argv = ["publish", repo, "--data-dir", str(sample_dir), "--yes", *(["--revision", revision] if revision else [])]
    refused_before_work(argv, capsys, no_work, expected)
    assert not hub.requests_for("create_repo", "preupload", "commit")


def test_a_read_only_token_is_refused_up_front_for_a_new_and_an_existing_repo(
    hub: FakeHub, sample_dir: Path, no_work: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    hub.create_repo(REPO)
    monkeypatch.setenv("HF_TOKEN", hub.add_user("alice", token="hf_alice_read_only", role="read").token)
    argv = ["publish", REPO, "--data-dir", str(sample_dir), "--yes"]
    refused_before_work(argv, capsys, no_work, f"this token cannot write to {REPO}")
    assert [r.status for r in hub.requests_for("auth_check")] == [403]  # asked with HfApi.auth_check(write=True)
    argv = ["publish", "alice/not-yet", "--data-dir", str(sample_dir), "--yes"]
    refused_before_work(argv, capsys, no_work, "this token is read-only: it cannot create alice/not-yet")


def test_yes_prints_the_plan_before_the_upload(hub: FakeHub, prepared_dir: Path, capsys) -> None:
    hub.create_repo(REPO)
    hub.commit_files(REPO, {"data/train-00000-of-00001.parquet": b"PAR1 old", "labels/samples.parquet": b"PAR1 old"})
    hub.inject_fault("preupload", status=503)  # the upload fails at once
    assert main(["publish", REPO, "--prepared", str(prepared_dir), "--yes"]) == 1
    out, err = capsys.readouterr()
    assert f"plan for {REPO}@main:" in out and "add: 21 file(s)" in out
    # What it would delete (an older layout), shown first.
    assert "delete: 2 file(s)\n    data/train-00000-of-00001.parquet\n    labels/samples.parquet" in out
    assert "the Hub answered 503" in err
