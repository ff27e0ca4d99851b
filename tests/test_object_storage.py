"""Sources and outputs in object storage: `prepare s3://... --out s3://...` on a real S3 server (moto's, on
127.0.0.1) through the unmodified s3fs client. The output equals the local prepare's byte for byte; OUT is
replaced only when the new output is complete, the README last; validate, publish and loading read it there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from hub_server import FakeHub, hub_fixture  # noqa: F401
from s3_server import S3
from test_prepare import tree_bytes
from test_publish import local_tree

from sousa_builder import load_prepared
from sousa_builder.cli import main
from sousa_builder.errors import OutputExistsError, SourceFormatError, SourceNotFoundError
from sousa_builder.manifest import MANIFEST, Manifest
from sousa_builder.prepare import prepare
from sousa_builder.publish import publish
from sousa_builder.validate import validate_prepared


@pytest.fixture
def bucket(s3: S3) -> str:
    return f"s3://{s3.bucket()}"


@pytest.fixture
def source_url(s3: S3, sample_dir: Path, bucket: str) -> str:
    """The sample source, uploaded."""
    return s3.upload(sample_dir, f"{bucket}/source")


def assert_equals_local(s3: S3, url: str, local: Path, tmp_path: Path) -> None:
    """OUT at `url` holds the local prepare's files byte for byte (the manifest: same files and sha256), and no
    staging or journal is left under it."""
    found = s3.download(url, tmp_path / "downloaded")
    assert tree_bytes(found) == tree_bytes(local)
    got, want = (Manifest.read(folder).files for folder in (found, local))
    assert {p: (e.size, e.sha256) for p, e in got.items()} == {p: (e.size, e.sha256) for p, e in want.items()}
    assert [key for key in s3.keys(url) if key.startswith(".sousa/")] == [MANIFEST]


def test_prepare_from_s3_to_s3_equals_the_local_prepare(
    s3: S3, source_url: str, bucket: str, prepared_dir: Path, tmp_path: Path
) -> None:
    out = f"{bucket}/sousa"
    result = prepare(source_url, out, num_proc=2, num_shards=2)
    assert result.out == out and not result.replaced_previous
    assert {name: {s: o.num_examples for s, o in splits.items()} for name, splits in result.configs.items()} == {
        name: {"train": 12, "validation": 6, "test": 6} for name in ("audio", "midi_only", "labels_only")
    }
    assert_equals_local(s3, out, prepared_dir, tmp_path)


def test_local_source_to_s3_and_s3_source_to_local(
    s3: S3, sample_dir: Path, source_url: str, bucket: str, tmp_path: Path
) -> None:
    expected = tmp_path / "expected"
    prepare(sample_dir, expected, configs=["midi_only"])
    prepare(sample_dir, f"{bucket}/from-local", configs=["midi_only"])
    assert_equals_local(s3, f"{bucket}/from-local", expected, tmp_path / "a")
    prepare(source_url, tmp_path / "to-local", configs=["midi_only"])
    assert tree_bytes(tmp_path / "to-local") == tree_bytes(expected)


def test_the_cli_prepares_s3_to_s3(s3: S3, source_url: str, bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", source_url, "--out", f"{bucket}/sousa", "--configs", "labels_only"]) == 0
    assert f"wrote {bucket}/sousa in" in capsys.readouterr().out
    assert s3.keys(f"{bucket}/sousa")[-3:] == [f"labels_only/{s}-00000-of-00001.parquet" for s in SPLITS]


SPLITS = ("test", "train", "validation")


def test_a_second_prepare_replaces_the_first_and_removes_its_stale_shards(
    s3: S3, sample_dir: Path, source_url: str, bucket: str, tmp_path: Path
) -> None:
    out = f"{bucket}/sousa"
    prepare(source_url, out, configs=["midi_only"], num_shards=2)
    assert "midi_only/train-00001-of-00002.parquet" in s3.keys(out)
    result = prepare(source_url, out, configs=["midi_only"], num_shards=1)
    assert result.replaced_previous
    expected = tmp_path / "expected"
    prepare(sample_dir, expected, configs=["midi_only"], num_shards=1)
    assert_equals_local(s3, out, expected, tmp_path)


def test_foreign_objects_in_out_are_refused_and_kept(s3: S3, source_url: str, bucket: str) -> None:
    s3.fs.pipe_file(f"{bucket}/mine/notes.txt".removeprefix("s3://"), b"my notes")
    with pytest.raises(OutputExistsError, match=r"--out s3://bucket-\d+/mine: holds files this command did not write"):
        prepare(source_url, f"{bucket}/mine", configs=["labels_only"])
    assert s3.keys(f"{bucket}/mine") == ["notes.txt"]

    out = f"{bucket}/sousa"
    prepare(source_url, out, configs=["labels_only"])
    before = s3.keys(out)
    s3.fs.pipe_file(f"{out}/labels_only/extra.parquet".removeprefix("s3://"), b"PAR1 not ours")
    with pytest.raises(OutputExistsError, match=r"labels_only/extra\.parquet: not written by sousa-builder"):
        prepare(source_url, out, configs=["labels_only"])
    assert s3.keys(out) == sorted([*before, "labels_only/extra.parquet"])


def test_a_missing_source_and_a_missing_media_file_are_one_line_naming_the_url(
    s3: S3, source_url: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SourceNotFoundError, match=rf"No SOUSA dataset at {bucket}/nothing: nothing there"):
        prepare(f"{bucket}/nothing", f"{bucket}/out")
    audio = next(key for key in s3.keys(source_url) if key.endswith(".flac"))
    s3.fs.rm_file(f"{source_url}/{audio}".removeprefix("s3://"))
    unusable = (
        rf"{source_url} fails validation \(media_files: 1 media reference\(s\) missing, unreadable or outside the "
        rf"root: {audio} \(sample .+\): missing\)$"
    )
    with pytest.raises(SourceFormatError, match=unusable):
        prepare(source_url, f"{bucket}/out")
    assert s3.keys(f"{bucket}/out") == []  # nothing written, not even a staging prefix
    assert main(["prepare", source_url, "--out", f"{bucket}/out"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{audio} (sample" in err and "Traceback" not in err


def test_a_url_whose_backend_is_not_installed_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fsspec")
    if _installed("gcsfs"):
        pytest.skip("gcsfs is installed here: gs:// has its backend")
    assert main(["prepare", "gs://bucket/sousa-raw", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sousa-builder prepare: error: gs://bucket/sousa-raw: reading and writing gs:// needs")
    assert "gcsfs" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_validate_and_load_read_the_output_at_its_url(
    s3: S3, source_url: str, bucket: str, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = f"{bucket}/sousa"
    prepare(source_url, out, num_shards=2)
    report = validate_prepared(out)
    assert report.target == out and report.ok(), report.summary()
    assert main(["validate", "--prepared", out, "--sample", "5"]) == 0

    # The storage options reach the filesystem: without the environment's endpoint, only they point at the server.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = {"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"}
    for config in ("midi_only", "labels_only"):
        remote = load_prepared(out, config, storage_options=options)
        local = datasets.load_dataset(str(prepared_dir), config)
        assert {s: d.num_rows for s, d in remote.items()} == {s: d.num_rows for s, d in local.items()}
        assert remote["train"].features == local["train"].features
        assert remote["test"].with_format("arrow")[:].equals(local["test"].with_format("arrow")[:])


def test_validate_fails_an_output_whose_shard_was_changed_in_the_bucket(s3: S3, source_url: str, bucket: str) -> None:
    out = f"{bucket}/sousa"
    prepare(source_url, out, configs=["labels_only"])
    shard = f"{out}/labels_only/train-00000-of-00001.parquet".removeprefix("s3://")
    data = bytearray(s3.fs.cat_file(shard))
    data[100] ^= 0xFF
    s3.fs.pipe_file(shard, bytes(data))
    report = validate_prepared(out)
    assert report["manifest"].status == "fail"
    assert report["manifest"].offenders == [
        "labels_only/train-00000-of-00001.parquet: its bytes are not the ones written (sha256 differs): "
        "row group 0, column sample_id fails its page checksum"
    ]
    assert report["row_counts"].status == "fail"  # the damaged shard is unreadable, not a crash


def test_publish_from_the_bucket_checks_the_hub_before_copying_anything(
    hub: FakeHub, s3: S3, source_url: str, bucket: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sousa_builder.prepared_files as prepared_files

    out = f"{bucket}/sousa"
    prepare(source_url, out, configs=["labels_only"])

    def listed(*args: object) -> None:
        raise AssertionError("the bucket was listed: the copy started before the Hub was asked")

    monkeypatch.setattr(prepared_files, "filesystem", listed)
    monkeypatch.delenv("HF_TOKEN")
    assert main(["publish", "alice/sousa", "--prepared", out, "--yes"]) == 1
    assert capsys.readouterr().err.strip() == (
        "sousa-builder publish: error: no Hub token: set HF_TOKEN or log in with `hf auth login`"
    )
    assert main(["publish", "bob/sousa", "--prepared", out, "--yes"]) == 1
    monkeypatch.setenv("HF_TOKEN", "hf_alice")
    assert main(["publish", "bob/sousa", "--prepared", out, "--yes"]) == 1
    assert "cannot write to namespace 'bob'" in capsys.readouterr().err
    assert not hub.requests_for("create_repo", "preupload", "commit")


def test_an_unreachable_storage_endpoint_is_named_as_the_storage(
    s3: S3, bucket: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "cannot reach the Hub": the URL whose endpoint failed is named, and nothing is written."""
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr("sousa_builder.storage._FILESYSTEMS", {})
    out = tmp_path / "out"
    assert main(["prepare", f"{bucket}/source", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sousa-builder prepare: error: cannot reach the storage of {bucket}/source"), err
    assert "Hub" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_publish_from_the_bucket_sends_what_publishing_the_local_folder_sends(
    hub: FakeHub, s3: S3, source_url: str, bucket: str, prepared_dir: Path
) -> None:
    out = f"{bucket}/sousa"
    prepare(source_url, out, num_shards=2)
    result = publish("alice/sousa", out)
    assert result.commit_url
    files = hub.files("alice/sousa")
    assert {path: data for path, data in files.items() if path != ".gitattributes"} == local_tree(prepared_dir)


def test_a_run_killed_midway_leaves_the_previous_output_readable(
    s3: S3, source_url: str, bucket: str, tmp_path: Path
) -> None:
    out = f"{bucket}/sousa"
    prepare(source_url, out, num_shards=2)
    previous = {key: s3.fs.cat_file(f"{out}/{key}".removeprefix("s3://")) for key in s3.keys(out)}
    command = [sys.executable, "-m", "sousa_builder", "prepare", source_url, "--out", out, "--num-proc", "2"]
    command += ["--max-shard-size", "20kB"]  # many small shards: the run is killed between two of them
    run = subprocess.Popen(command, env=os.environ, start_new_session=True)
    staged = _wait_for(lambda: [k for k in s3.keys(out) if k.startswith(".sousa/staging-") and k.endswith(".parquet")])
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert staged, "the run wrote no shard before it ended"
    keys = s3.keys(out)
    assert [k for k in keys if not k.startswith(".sousa/staging-") and k != ".sousa/lease.json"] == sorted(previous)
    assert {key: s3.fs.cat_file(f"{out}/{key}".removeprefix("s3://")) for key in previous} == previous
    assert load_prepared(out, "labels_only", split="train").num_rows == 12
    # The next run removes what the killed one staged.
    prepare(source_url, out, num_shards=1, configs=["labels_only"])
    assert not [k for k in s3.keys(out) if k.startswith(".sousa/staging-")]


def _wait_for(found, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.05)
    return None


def test_a_run_that_died_after_putting_its_output_in_place_is_completed_by_the_next(
    s3: S3, source_url: str, sample_dir: Path, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sousa_builder.bucket_output import BucketStore
    from sousa_builder.store import REPLACED, left_as

    out = f"{bucket}/sousa"
    prepare(source_url, out, configs=["labels_only"], num_shards=2)
    real_remove = BucketStore._remove_staging

    def interrupted(self: BucketStore, names: list[str]) -> None:  # after the copies, the README and the manifest
        if names:
            raise KeyboardInterrupt

    monkeypatch.setattr(BucketStore, "_remove_staging", interrupted)
    with pytest.raises(KeyboardInterrupt) as stopped:
        prepare(source_url, out, configs=["labels_only"], num_shards=1)
    assert left_as(stopped.value) == REPLACED
    journal = json.loads(s3.fs.cat_file(f"{out}/.sousa/commit.json".removeprefix("s3://")))
    assert journal["phase"] == "placed" and journal["staging"][0].startswith(".sousa/staging-")
    monkeypatch.setattr(BucketStore, "_remove_staging", real_remove)
    report = validate_prepared(out)
    assert report["manifest"].status == "pass"  # the new output is complete; only its staging copy is left
    prepare(source_url, out, configs=["labels_only"], num_shards=1)  # completes the commit, then replaces it
    expected = tmp_path / "expected"
    prepare(sample_dir, expected, configs=["labels_only"], num_shards=1)
    assert_equals_local(s3, out, expected, tmp_path)


def test_completing_a_stopped_replacement_refuses_files_written_since_and_keeps_them(
    s3: S3, source_url: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sousa_builder.bucket_output import BucketStore

    out = f"{bucket}/sousa"
    prepare(source_url, out, configs=["labels_only"], num_shards=2)
    with monkeypatch.context() as patched:
        patched.setattr(BucketStore, "_copy", interrupt)
        with pytest.raises(KeyboardInterrupt):  # stopped as its copies began
            prepare(source_url, out, configs=["labels_only"], num_shards=1)
    # A new file, and one the commit would copy over again (the new output's shard, rewritten since the crash).
    for name, data in (("notes.txt", b"mine"), ("labels_only/train-00000-of-00001.parquet", b"also mine")):
        s3.fs.pipe_file(f"{out}/{name}".removeprefix("s3://"), data)
    before = {key: s3.fs.cat_file(f"{out}/{key}".removeprefix("s3://")) for key in s3.keys(out)}
    with pytest.raises(OutputExistsError) as refused:
        prepare(source_url, out, configs=["labels_only"], num_shards=1)
    message = str(refused.value)
    assert message.startswith(f"--out {out}: holds files this command did not write or that changed since ("), message
    assert "labels_only/train-00000-of-00001.parquet: 9 bytes, written as " in message
    assert message.endswith("notes.txt: not written by sousa-builder); choose another location, or empty it yourself")
    assert {key: s3.fs.cat_file(f"{out}/{key}".removeprefix("s3://")) for key in s3.keys(out)} == before


def interrupt(*args: object) -> None:
    raise KeyboardInterrupt


def test_urls_that_validate_and_publish_cannot_take_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "s3://bucket/sousa-raw"])
    assert exit_.value.code == 2
    assert (
        "DATA_DIR s3://bucket/sousa-raw: must be a local folder (only --prepared may be a URL)"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as exit_:
        main(["publish", "alice/sousa", "--data-dir", "s3://bucket/sousa-raw", "--yes"])
    assert exit_.value.code == 2
    assert "--data-dir s3://bucket/sousa-raw: must be a local folder; prepare the URL first" in capsys.readouterr().err


def test_a_media_file_that_is_not_flac_stops_the_run_and_leaves_out_as_it_was(
    s3: S3, source_url: str, bucket: str
) -> None:
    out = f"{bucket}/sousa"
    prepare(source_url, out, configs=["midi_only"])
    before = {key: s3.fs.cat_file(f"{out}/{key}".removeprefix("s3://")) for key in s3.keys(out)}
    audio = next(key for key in s3.keys(source_url) if key.endswith(".flac"))
    s3.fs.pipe_file(f"{source_url}/{audio}".removeprefix("s3://"), b"RIFF....WAVE, not a FLAC file")
    not_flac = rf"{source_url}/{audio} \(sample .+\): not a FLAC file \(it does not start with fLaC"
    with pytest.raises(SourceFormatError, match=not_flac):
        prepare(source_url, out)
    assert {key: s3.fs.cat_file(f"{out}/{key}".removeprefix("s3://")) for key in s3.keys(out)} == before


def test_out_that_is_holds_or_lies_inside_a_source_url_is_refused(
    s3: S3, source_url: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = s3.keys(bucket)
    for out in (f"{source_url}/sousa", f"{source_url}/", bucket, source_url.replace("s3://", "s3a://")):
        assert main(["prepare", source_url, "--out", out, "--configs", "labels_only"]) == 1
        shown = out.rstrip("/")
        assert capsys.readouterr().err == (
            f"sousa-builder prepare: error: --out {shown}: is, holds or lies inside the SOUSA directory "
            f"{source_url}; choose a location outside it\n"
        )
    with pytest.raises(OutputExistsError, match="lies inside the SOUSA directory"):
        prepare(f"{source_url}/", f"{source_url}//nested")
    assert s3.keys(bucket) == before
