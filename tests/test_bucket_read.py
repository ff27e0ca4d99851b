"""Reading a prepared output from a bucket (moto's S3 server on 127.0.0.1): every path stays inside its root,
objects the manifest does not list are refused as they are locally, and messages name the URL the user gave."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hub_server import FakeHub, hub_fixture  # noqa: F401
from s3_server import S3

from sousa_builder.cli import main
from sousa_builder.errors import PreparedFolderError
from sousa_builder.manifest import MANIFEST
from sousa_builder.prepare import prepare
from sousa_builder.validate import validate_prepared

SHARD = "labels_only/train-00000-of-00001.parquet"


@pytest.fixture
def out(s3: S3, sample_dir: Path) -> str:
    """A prepared output (labels_only) in a bucket of its own."""
    url = f"s3://{s3.bucket()}/sousa"
    prepare(sample_dir, url, configs=["labels_only"])
    return url


@pytest.fixture
def temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder the tool copies into (TMPDIR), inside `tmp_path`: what it writes there is seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def key(url: str) -> str:
    return url.removeprefix("s3://")


def test_objects_the_manifest_does_not_list_fail_validate_as_in_a_local_folder(
    s3: S3, out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A note at the root and a foreign Parquet in a config folder (named like a shard: publish would send it)."""
    shard = s3.fs.cat_file(key(f"{out}/{SHARD}"))
    s3.fs.pipe_file(key(f"{out}/notes.txt"), b"mine")
    s3.fs.pipe_file(key(f"{out}/labels_only/train-00001-of-00002.parquet"), shard)
    report = validate_prepared(out)
    assert report["manifest"].status == "fail"
    expected = [f"{name}: not written by sousa-builder" for name in ("labels_only/train-00001-of-00002.parquet",
                                                                      "notes.txt")]  # fmt: skip
    assert report["manifest"].offenders == expected
    local = validate_prepared(s3.download(out, tmp_path / "local"))  # the same objects in a local folder
    assert local["manifest"].offenders == expected
    assert main(["validate", "--prepared", out]) == 1
    assert "notes.txt: not written by sousa-builder" in capsys.readouterr().out


def test_publish_refuses_objects_the_manifest_does_not_list_before_copying_or_sending(
    hub: FakeHub, s3: S3, out: str, temporary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.fs.pipe_file(key(f"{out}/labels_only/test-00001-of-00002.parquet"), b"PAR1 not ours PAR1")
    assert main(["publish", "alice/sousa", "--prepared", out, "--yes"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"sousa-builder publish: error: {out}: holds 1 object(s) its manifest does not list "
        "(labels_only/test-00001-of-00002.parquet), so it is not the output prepare wrote and nothing was "
        "published: remove them, or prepare again\n"
    )
    assert not hub.requests_for("create_repo", "preupload", "commit")
    assert not list(temporary.iterdir())  # nothing copied


@pytest.mark.parametrize("entry", ["../escape.txt", "../../escape.txt", "/escape.txt", "a/./b", "a//b"])
def test_a_manifest_entry_leading_outside_the_output_is_refused_before_anything_is_read_or_written(
    hub: FakeHub, s3: S3, out: str, temporary: Path, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The object exists at that key too (S3 keeps `..` in a key as it is): today's copy would write it there."""
    manifest = json.loads(s3.fs.cat_file(key(f"{out}/{MANIFEST}")))
    manifest["files"][entry] = {"size": 4, "mtime_ns": 0, "sha256": "0" * 64}
    s3.fs.pipe_file(key(f"{out}/{MANIFEST}"), json.dumps(manifest).encode())
    s3.fs.pipe_file(f"{key(out)}/{entry.lstrip('/')}", b"evil")
    with pytest.raises(PreparedFolderError, match="not a plain path inside"):
        validate_prepared(out)
    for command in (["validate", "--prepared", out], ["publish", "alice/sousa", "--prepared", out, "--yes"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"sousa-builder {command[0]}: error: {out}: "), err
        assert "not a plain path inside" in err and err.count("\n") == 1
    assert not list(temporary.iterdir())  # no copy made, nothing written beside it
    assert not list(temporary.parent.rglob("escape.txt"))
    assert not hub.requests_for("create_repo", "preupload", "commit")


def test_an_object_key_leading_outside_the_output_is_refused(s3: S3, out: str, temporary: Path) -> None:
    """An object under OUT whose key climbs out of it (`OUT/x/../../escape.txt`), not in the manifest."""
    s3.fs.pipe_file(f"{key(out)}/x/../../escape.txt", b"evil")
    with pytest.raises(PreparedFolderError, match=r"an object key names 'x/\.\./\.\./escape\.txt'"):
        validate_prepared(out)
    assert not list(temporary.iterdir())


def test_publish_names_the_url_not_its_temporary_copy(
    hub: FakeHub, s3: S3, out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A listed shard changed in the bucket: publish refuses, naming the URL and the command to run on it."""
    data = bytearray(s3.fs.cat_file(key(f"{out}/{SHARD}")))
    data[100] ^= 0xFF
    s3.fs.pipe_file(key(f"{out}/{SHARD}"), bytes(data))
    assert main(["publish", "alice/sousa", "--prepared", out, "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sousa-builder publish: error: {out} fails validation, so nothing was published"), err
    assert f"`sousa-builder validate --prepared {out}` gives the full report" in err
    assert "sousa-prepared-" not in err and err.count("\n") == 1
    assert not hub.requests_for("create_repo", "preupload", "commit")
