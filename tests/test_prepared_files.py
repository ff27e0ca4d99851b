"""A prepared output is read where it is, a local folder and a bucket (moto's S3 server on 127.0.0.1) alike:
`validate --prepared` and `publish --prepared` write no copy of it to local disk, publishing streams each object
from the bucket to the Hub and checks its sha256 against the manifest as it goes, and the Hub gets the same tree
either way."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hub_server import FakeHub, hub_fixture  # noqa: F401
from s3_server import S3
from test_publish import local_tree

from sousa_builder.cli import main
from sousa_builder.errors import PreparedFolderError
from sousa_builder.manifest import FileEntry
from sousa_builder.prepare import prepare
from sousa_builder.publish import publish
from sousa_builder.storage import filesystem
from sousa_builder.validate import validate_prepared
from sousa_builder.verified_stream import VerifiedReader

SHARD = "labels_only/train-00000-of-00002.parquet"
HUB_OWN = "fake-hub-"  # the test Hub (in this process) keeps Xet uploads in temporary files of its own


@pytest.fixture(params=["local", "s3"])
def out(request: pytest.FixtureRequest, sample_dir: Path, tmp_path: Path) -> str:
    """The sample prepared as the session's `prepared_dir` is (two shards a split), in a folder or a bucket."""
    if request.param == "local":
        location = str(tmp_path / "out")
    else:
        location = f"s3://{request.getfixturevalue('s3').bucket()}/sousa"
    prepare(sample_dir, location, num_shards=2)
    return location


@pytest.fixture
def s3_out(s3: S3, sample_dir: Path) -> str:
    """The sample prepared into a bucket (before the temporary folder is watched: prepare has a scratch folder)."""
    location = f"s3://{s3.bucket()}/sousa"
    prepare(sample_dir, location, num_shards=2)
    return location


@dataclass
class Watched:
    """A temporary folder, and every path seen in it by a thread that looks every few milliseconds."""

    folder: Path
    seen: set[str] = field(default_factory=set)


@pytest.fixture
def temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Watched]:
    """An empty temporary folder (TMPDIR, and `tempfile`'s), watched while the test runs: a file written there and
    removed before the test ends is seen too."""
    watched = Watched(tmp_path / "tmp")
    watched.folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(watched.folder))
    monkeypatch.setattr(tempfile, "tempdir", str(watched.folder))
    done = threading.Event()

    def look() -> None:
        while not done.is_set():
            for directory, folders, files in os.walk(watched.folder):
                folders[:] = [name for name in folders if not name.startswith(HUB_OWN)]
                watched.seen.update(os.path.join(directory, n) for n in folders + files if not n.startswith(HUB_OWN))
            done.wait(0.005)

    looking = threading.Thread(target=look, daemon=True)
    looking.start()
    yield watched
    done.set()
    looking.join()


def changed(data: bytes) -> bytes:
    """The same size, other bytes (a byte in the middle flipped)."""
    edited = bytearray(data)
    edited[len(edited) // 2] ^= 0xFF
    return bytes(edited)


@pytest.mark.parametrize("hub", ["lfs", "xet"], indirect=True)
def test_validate_and_publish_read_the_output_where_it_is_and_send_the_same_tree(
    hub: FakeHub, out: str, prepared_dir: Path, temporary: Watched, capsys: pytest.CaptureFixture[str]
) -> None:
    """No temporary copy: the temporary folder stays empty through validate and publish, of a folder or a URL.
    huggingface_hub's own warning that a stream does not go through Xet stays out of stderr."""
    report = validate_prepared(out)
    assert report.ok(), report.summary()
    assert report.target == out
    assert main(["validate", "--prepared", out, "--sample", "5"]) == 0
    capsys.readouterr()
    assert main(["publish", "alice/sousa", "--prepared", out, "--yes"]) == 0
    assert "Xet" not in capsys.readouterr().err
    assert len(hub.requests_for("commit")) == 1  # one atomic commit
    files = hub.files("alice/sousa")
    assert {path: data for path, data in files.items() if path != ".gitattributes"} == local_tree(prepared_dir)
    assert temporary.seen == set()


@pytest.mark.parametrize("etag", ["kept", "forgotten"])
def test_an_object_changed_after_validation_is_refused_before_the_commit(
    hub: FakeHub, s3: S3, s3_out: str, temporary: Watched, etag: str
) -> None:
    """The shard changes in the bucket while the user looks at the plan (same size, other bytes): nothing is
    committed, and the one line names the object's URL. s3fs reads with the ETag listed (If-Match), so the first read
    fails; a store that does not (the listing forgotten here) sends the bytes, and the sha256 stops the upload
    before its last bytes."""
    out = s3_out
    key = f"{out}/{SHARD}".removeprefix("s3://")

    def change_then_confirm(plan: object) -> bool:
        s3.fs.pipe_file(key, changed(s3.fs.cat_file(key)))
        if etag == "forgotten":
            filesystem(out)[0].invalidate_cache()
        return True

    with pytest.raises(PreparedFolderError) as refused:
        publish("alice/sousa", out, confirm=change_then_confirm)
    what = "its ETag is not the one listed and checked" if etag == "kept" else "its bytes (sha256) are not the ones "
    what += "" if etag == "kept" else "its manifest lists"
    assert str(refused.value) == (
        f"{out}/{SHARD}: {what}: changed since prepare wrote it, so nothing was committed: prepare {out} again"
    )
    if etag == "forgotten":  # the bytes were on their way: the upload began, and did not complete
        assert hub.requests_for("lfs_batch")
    assert not hub.requests_for("commit")
    assert temporary.seen == set()


def test_a_changed_object_fails_publish_in_one_line_naming_the_url(
    hub: FakeHub, s3: S3, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Changed before publish (same size): its ETag is not the one the manifest recorded, so its sha256 is read."""
    out = f"s3://{s3.bucket()}/sousa"
    prepare(sample_dir, out, num_shards=2)
    key = f"{out}/{SHARD}".removeprefix("s3://")
    s3.fs.pipe_file(key, changed(s3.fs.cat_file(key)))
    assert main(["publish", "alice/sousa", "--prepared", out, "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sousa-builder publish: error: {out} fails validation, so nothing was published"), err
    assert f"{SHARD}: its bytes are not the ones written" in err and err.count("\n") == 1
    assert not hub.requests_for("preupload", "commit")


def test_the_stream_checks_every_byte_it_hands_out(s3: S3) -> None:
    """Read as an upload reads it (in parts, going back to send one again): the bytes are the object's; with another
    sha256 in the manifest, every read but the last succeeds and the last raises instead of returning; with another
    size, the first read raises."""
    url = f"s3://{s3.bucket()}/sousa"
    data = bytes(range(256)) * 4000  # 1,024,000 bytes
    s3.fs.pipe_file(f"{url}/a.bin".removeprefix("s3://"), data)
    right = FileEntry(len(data), 0, hashlib.sha256(data).hexdigest())
    with VerifiedReader(url, "a.bin", right) as stream:
        assert stream.head() == data[:512] and stream.tell() == 0
        first = stream.read(300_000)
        stream.seek(100_000)  # a part sent again
        again = stream.read(200_000) + stream.read(300_000)
        rest = stream.read()
        assert first + again[200_000:] + rest == data and again[:200_000] == data[100_000:300_000]
        assert stream.read() == b""
    wrong = FileEntry(len(data), 0, "0" * 64)
    with VerifiedReader(url, "a.bin", wrong) as stream:
        handed = [stream.read(100_000) for _ in range(10)]
        assert b"".join(handed) == data[:1_000_000]
        with pytest.raises(PreparedFolderError, match=f"^{url}/a.bin: its bytes .sha256. are not the ones"):
            stream.read(100_000)
    longer = FileEntry(len(data) + 1, 0, right.sha256)
    with VerifiedReader(url, "a.bin", longer) as stream, pytest.raises(PreparedFolderError, match="1,024,001 its"):
        stream.read(10)


def test_a_dry_run_writes_the_tree_publishing_would_send(
    hub: FakeHub, out: str, prepared_dir: Path, tmp_path: Path
) -> None:
    """`--dry-run DIR` of a URL streams each object into DIR through the same checked stream as an upload."""
    result = publish("alice/sousa", out, dry_run_dir=tmp_path / "plan")
    assert result.commit_url is None
    assert local_tree(tmp_path / "plan") == local_tree(prepared_dir)
    assert not hub.requests_for("create_repo", "preupload", "commit")
