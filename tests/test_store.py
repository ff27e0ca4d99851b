"""One storage layer, one set of promises: each test runs on a local folder and on S3 (moto's, on 127.0.0.1).

An interrupted commit says what it left and leaves exactly that; content, not size, proves a file ours; a second
run is refused while the first holds OUT; what killed runs left (staging, multipart uploads, temporary folders)
is removed by the next run, and nothing of the user's is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from s3_server import S3
from test_prepare import tree_bytes

from sousa_builder.cli import main
from sousa_builder.storage import filesystem, overlapping
from sousa_builder.store import remove_dead_temporary_folders


class Out:
    """An OUT on one backend: its location as the CLI takes it, and ways to read and change it behind our back."""

    def __init__(self, location: str, s3: S3 | None):
        self.location, self.s3 = location, s3

    def files(self) -> dict[str, bytes]:
        if self.s3 is None:
            root = Path(self.location)
            return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        base = self.location.removeprefix("s3://")
        self.s3.fs.invalidate_cache()
        return {key[len(base) + 1 :]: self.s3.fs.cat_file(key) for key in self.s3.fs.find(base)}

    def write(self, relative: str, data: bytes) -> None:
        if self.s3 is None:
            path = Path(self.location) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            self.s3.fs.pipe_file(f"{self.location}/{relative}".removeprefix("s3://"), data)

    def tree(self, tmp_path: Path) -> dict[str, bytes]:
        """The output's files but its manifest, as `test_prepare.tree_bytes` compares them."""
        if self.s3 is None:
            return tree_bytes(Path(self.location))
        return tree_bytes(self.s3.download(self.location, tmp_path / "downloaded"))


@pytest.fixture(params=["local", "s3"])
def out(request: pytest.FixtureRequest, tmp_path: Path) -> Out:
    if request.param == "local":
        return Out(str(tmp_path / "out"), None)
    s3 = request.getfixturevalue("s3")
    return Out(f"s3://{s3.bucket()}/out", s3)


def prepare(source: Path | str, out: Out, *more: str) -> int:
    return main(["prepare", str(source), "--out", out.location, "--configs", "labels_only", *more])


def ours(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files but the store's own bookkeeping (the manifest records ETags and times)."""
    return {relative: data for relative, data in files.items() if not relative.startswith(".sousa/")}


def test_a_same_size_edit_is_refused_and_kept(sample_dir: Path, out: Out, capsys: pytest.CaptureFixture[str]) -> None:
    assert prepare(sample_dir, out) == 0
    readme = out.files()["README.md"]
    edited = readme.replace(b"labels_only", b"LABELS_ONLY", 1)
    assert len(edited) == len(readme) and edited != readme
    out.write("README.md", edited)
    if out.s3 is None:  # the same modification time too: only the bytes differ
        stat = (Path(out.location) / "README.md").stat()
        os.utime(Path(out.location) / "README.md", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    before = out.files()
    assert prepare(sample_dir, out) == 1
    err = capsys.readouterr().err
    assert f"--out {out.location}: holds files this command did not write or that changed since (README.md: " in err
    assert out.files() == before


def test_objects_under_names_like_ours_are_not_ours(
    sample_dir: Path, out: Out, capsys: pytest.CaptureFixture[str]
) -> None:
    """A staging name without the marker a run writes first, and anything else under .sousa/, are the user's."""
    assert prepare(sample_dir, out) == 0
    out.write(".sousa/staging-0123456789ab/notes.txt", b"mine")
    before = out.files()
    assert prepare(sample_dir, out) == 1
    assert ".sousa/staging-0123456789ab/notes.txt: not written by sousa-builder" in capsys.readouterr().err
    assert out.files() == before


def test_a_second_run_is_refused_while_the_first_holds_out(
    sample_dir: Path, out: Out, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prepare(sample_dir, out) == 0
    before = out.files()
    if out.s3 is None:
        import fcntl

        lock = open(Path(out.location).parent / ".out.lock", "w")  # noqa: SIM115  (what a running prepare holds)
        fcntl.flock(lock, fcntl.LOCK_EX)
    else:  # the lease of a run on another machine
        lease = {"owner": "elsewhere:1:abc", "expires": time.time() + 600}
        out.write(".sousa/lease.json", json.dumps(lease).encode())
        before = out.files()
    assert prepare(sample_dir, out) == 1
    err = capsys.readouterr().err
    assert f"{out.location}: another sousa-builder run is writing it now" in err and err.count("\n") == 1
    assert out.files() == before
    if out.s3 is None:
        lock.close()
    else:  # expired: taken over
        out.write(".sousa/lease.json", json.dumps({**lease, "expires": time.time() - 1}).encode())
    assert prepare(sample_dir, out) == 0
    assert ".sousa/lease.json" not in out.files()


@pytest.mark.parametrize("where", ["copying", "placed"])
def test_an_interrupted_commit_says_what_it_left_and_leaves_that(
    sample_dir: Path,
    source_copy: Path,
    out: Out,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """A real SIGINT, sent while the new output is being put in place: the one line says whether OUT is unchanged,
    replaced or midway, and it is; validate refuses a midway OUT; a refused run changes nothing; the next good run
    leaves the new output, and nothing else."""
    assert prepare(sample_dir, out, "--max-shard-size", "20kB") == 0  # more shards than the next run
    previous = ours(out.files())
    expected = tmp_path / "expected"
    main(["prepare", str(sample_dir), "--out", str(expected), "--configs", "labels_only"])
    _signal_while_placing(out, monkeypatch, where)
    assert prepare(sample_dir, out) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    monkeypatch.undo()
    assert line.startswith(f"sousa-builder prepare: interrupted: {out.location} "), line
    # A local swap is one step (signals held): replaced. Object storage copies file by file: midway, then replaced.
    assert ("midway" in line) == (out.s3 is not None and where == "copying"), line
    if line.endswith("is unchanged"):
        assert ours(out.files()) == previous
    elif "was replaced" in line:
        assert out.tree(tmp_path / "a") == tree_bytes(expected)
    else:
        assert "is midway through its replacement" in line, line
        assert main(["validate", "--prepared", out.location]) == 1
        err = capsys.readouterr().err
        assert "a prepare was stopped while putting its output in place" in err and err.count("\n") == 1
        midway = out.files()
        (source_copy / "labels").rename(source_copy / "labels-moved")  # a broken source: refused
        assert prepare(source_copy, out) == 1
        capsys.readouterr()
        assert out.files() == midway  # the cancelled replacement was not completed by a refused run
    assert prepare(sample_dir, out) == 0
    assert out.tree(tmp_path / "b") == tree_bytes(expected)
    assert main(["validate", "--prepared", out.location]) == 0
    assert not [key for key in out.files() if key.startswith(".sousa/") and key != ".sousa/manifest.json"]
    if out.s3 is None:
        assert sorted(p.name for p in Path(out.location).parent.iterdir() if p.name.startswith(".out")) == []


def _signal_while_placing(out: Out, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Send SIGINT to this process from inside the commit: after the first copy (object storage) or the swap
    (a local folder), or after everything is in place ("placed")."""
    if out.s3 is None:
        import sousa_builder.output as output

        real = output._exchange if where == "copying" else output.shutil.rmtree

        def then_signal(*args: object, **kwargs: object) -> object:
            os.kill(os.getpid(), signal.SIGINT)
            return real(*args, **kwargs)

        if where == "copying":  # as the swap begins
            monkeypatch.setattr(output, "_exchange", then_signal)
        else:  # as the previous output is removed
            monkeypatch.setattr(output, "shutil", _Shutil(then_signal))
        return
    fs, _ = filesystem(out.location)
    real_copy = fs.copy
    copies = []

    def copy_then_signal(*args: object, **kwargs: object) -> object:
        result = real_copy(*args, **kwargs)
        copies.append(args)
        if where == "copying" and len(copies) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(fs, "copy", copy_then_signal)
    if where == "placed":
        from sousa_builder.bucket_output import BucketStore

        real_journal = BucketStore._write_journal

        def journal_then_signal(self: BucketStore, names: list[str], phase: str) -> None:
            real_journal(self, names, phase)
            if phase == "placed":
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(BucketStore, "_write_journal", journal_then_signal)


class _Shutil:
    """`shutil` with `rmtree` replaced (the local commit removes the previous output with it)."""

    def __init__(self, rmtree: object):
        import shutil

        self._shutil, self.rmtree = shutil, rmtree

    def __getattr__(self, name: str) -> object:
        return getattr(self._shutil, name)


def test_leftovers_of_killed_runs_are_removed_and_nothing_else(
    sample_dir: Path, out: Out, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging of a dead run (a folder beside OUT, or a marked prefix with an unfinished multipart upload under it)
    and the temporary folders of dead processes go; a live process's temporary folder stays."""
    assert prepare(sample_dir, out) == 0
    if out.s3 is None:
        left = Path(out.location).parent / ".out.partial-k1ll3d"
        (left / "labels_only").mkdir(parents=True)
        (left / "labels_only" / "big.parquet").write_bytes(b"x" * 1000)
    else:
        out.write(".sousa/staging-0123456789ab.json", b"{}")  # the marker a run writes before staging anything
        out.write(".sousa/staging-0123456789ab/labels_only/train-00000-of-00001.parquet", b"x" * 1000)
        bucket, _, key = out.location.removeprefix("s3://").partition("/")
        out.s3.fs.call_s3(
            "create_multipart_upload", Bucket=bucket, Key=f"{key}/.sousa/staging-0123456789ab/audio/big.parquet"
        )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name in (f"sousa-prepare-{int(dead.stdout)}-ab12", f"sousa-prepare-{int(dead.stdout)}-cd34"):
        (tmp_path / "temp" / name / "labels").mkdir(parents=True)
    alive = tmp_path / "temp" / f"sousa-prepare-{os.getpid()}-ef56"
    alive.mkdir()
    assert prepare(sample_dir, out) == 0
    assert sorted(p.name for p in (tmp_path / "temp").iterdir()) == [alive.name]
    if out.s3 is None:
        assert sorted(p.name for p in Path(out.location).parent.iterdir() if p.name.startswith(".out")) == []
    else:
        assert [key for key in out.files() if key.startswith(".sousa/")] == [".sousa/manifest.json"]
        assert not out.s3.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key).get("Uploads")


def test_dead_temporary_folders_need_a_pid_and_a_dead_one(tmp_path: Path) -> None:
    for name in ("sousa-prepare-12345678", "sousa-prepare-abc-1", "sousa-prepare-1-x"):
        (tmp_path / name).mkdir()
    (tmp_path / f"sousa-prepare-{os.getpid()}-x").mkdir()
    removed = remove_dead_temporary_folders(tmp_path)
    # pid 1 lives (init); the others have no pid in their name (an earlier version's, or not ours)
    assert removed == []
    assert len(list(tmp_path.iterdir())) == 4


def test_a_folder_marker_is_not_a_file(s3: S3, sample_dir: Path) -> None:
    """A console's 0-byte "out/" object does not make OUT look foreign, before or after a first output."""
    bucket = s3.bucket()
    s3.fs.call_s3("put_object", Bucket=bucket, Key="out/", Body=b"")
    out = Out(f"s3://{bucket}/out", s3)
    assert prepare(sample_dir, out) == 0
    s3.fs.call_s3("put_object", Bucket=bucket, Key="out/labels_only/", Body=b"")
    assert prepare(sample_dir, out) == 0


def test_a_failed_upload_is_aborted(s3: S3) -> None:
    from sousa_builder.storage import created

    bucket = s3.bucket()
    with pytest.raises(RuntimeError), created(f"s3://{bucket}/out/big.bin") as stream:
        stream.write(b"x" * (60 << 20))  # past s3fs's block: a multipart upload has begun
        assert s3.fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads")
        raise RuntimeError("the writer failed")
    assert not s3.fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads")
    assert s3.keys(f"s3://{bucket}/out") == []


def test_a_doubled_slash_does_not_make_keys_starting_with_a_slash(s3: S3, sample_dir: Path) -> None:
    bucket = s3.bucket()
    assert main(["prepare", str(sample_dir), "--out", f"s3://{bucket}//out/", "--configs", "labels_only"]) == 0
    assert all(not key.startswith("/") for key in s3.fs.find(bucket) for key in [key[len(bucket) + 1 :]])
    assert "README.md" in s3.keys(f"s3://{bucket}/out")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("s3://b/data", "s3://b/data/out", True),
        ("s3://b/data/", "s3://b/data", True),
        ("s3://b", "s3://b/data", True),
        ("s3a://b/data", "s3://b/data/x", True),
        ("s3://b//data", "s3://b/data/x", True),
        ("s3://b/data", "s3://b/data2", False),  # whole path parts: a shared name prefix is not nesting
        ("s3://b/data", "s3://c/data", False),
        ("s3://b/data", "gs://b/data", False),
        ("s3://b/data", "data", False),
    ],
)
def test_overlapping_urls(a: str, b: str, expected: bool) -> None:
    assert overlapping(a, b) is overlapping(b, a) is expected


def test_overlapping_folders(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    assert overlapping(tmp_path / "link" / "out", tmp_path / "data")
    assert overlapping(f"file://{tmp_path}/data", tmp_path / "data" / "out")
    assert overlapping(tmp_path / "data" / ".." / "data", tmp_path / "data")
    assert not overlapping(tmp_path / "data2", tmp_path / "data")
    assert not overlapping(tmp_path / "out", tmp_path / "data")
