"""`validate --prepared OUT` without `--source` (and so `publish --prepared OUT`) runs the media rules on every audio
and MIDI value the shards embed, in the pass that hashes them: a folder whose shard and manifest agree (a tool bug,
a hand-edited folder) but which embeds a broken file fails, naming config, shard, sample and problem, and nothing
reaches the Hub. A local folder and a bucket (moto's S3 on 127.0.0.1) alike."""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_server import FakeHub, hub_fixture  # noqa: F401

from sousa_builder import manifest as manifest_module
from sousa_builder import prepared_files
from sousa_builder.cli import main
from sousa_builder.manifest import MANIFEST, Manifest, write_manifest
from sousa_builder.prepare import prepare
from sousa_builder.storage import filesystem, is_url
from sousa_builder.validate import validate_prepared
from sousa_builder.validate.embedded_media import HashingReader

AUDIO_SHARD = "audio/train-00000-of-00002.parquet"
MIDI_SHARD = "midi_only/train-00000-of-00002.parquet"
TEXT = b"this is not a FLAC file, only 180 bytes of text".ljust(180, b".")


@pytest.fixture(params=["local", "s3"])
def out(request: pytest.FixtureRequest, prepared_dir: Path, sample_dir: Path, tmp_path: Path) -> str:
    """The sample prepared (two shards a split), in a folder of the test's own or in a bucket."""
    if request.param == "local":
        return str(shutil.copytree(prepared_dir, tmp_path / "out"))
    location = f"s3://{request.getfixturevalue('s3').bucket()}/sousa"
    prepare(sample_dir, location, num_shards=2)
    return location


def _other_length(table: pa.Table) -> bytes:
    """A real FLAC of the shard whose row lasts other than the first row's (by more than the tolerance)."""
    durations = table["duration_sec"].to_pylist()
    row = next(i for i, d in enumerate(durations) if abs(d - durations[0]) > 0.5)
    return table["audio"][row].as_py()["bytes"]


# Each: (shard, column, the bytes embedded for the shard's first sample, what the line says is wrong).
BREAKAGES = {
    "text_as_flac": (AUDIO_SHARD, "audio", lambda t: TEXT, "audio: not a FLAC file (it does not start with fLaC)"),
    "flac_without_streaminfo": (
        AUDIO_SHARD,
        "audio",
        lambda t: b"fLaC" + b" not a STREAMINFO block".ljust(60, b"."),
        "audio: not a FLAC file (fLaC is not followed by a whole STREAMINFO block)",
    ),
    "flac_of_another_length": (AUDIO_SHARD, "audio", _other_length, "audio: lasts "),
    "midi_without_header": (
        MIDI_SHARD,
        "midi",
        lambda t: b"MThd" + b"\x00" * 10,
        "midi: not a MIDI file (it does not start with an MThd header)",
    ),
}


def embed(out: str, shard: str, column: str, value: bytes | callable) -> str:
    """Embed `value` (or `value(table)`) as the first row's `column` in `shard`, and make the manifest agree, as a
    tool bug or a hand edit would leave it; return that row's sample id."""
    fs, root = filesystem(out) if is_url(out) else (None, out)
    key = f"{root.rstrip('/')}/{shard}"
    table = pq.read_table(io.BytesIO(fs.cat_file(key) if fs else Path(key).read_bytes()))
    data = value(table) if callable(value) else value
    values = table[column].combine_chunks()
    if pa.types.is_struct(values.type):
        data_list = values.field("bytes").to_pylist()
        data_list[0] = data
        arrays = [pa.array(data_list, pa.binary()), values.field("path")]
        changed = pa.StructArray.from_arrays(arrays, fields=list(values.type))
    else:
        data_list = values.to_pylist()
        data_list[0] = data
        changed = pa.array(data_list, values.type)
    sink = io.BytesIO()
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, changed), sink)
    if fs is None:
        Path(key).write_bytes(sink.getvalue())
        write_manifest(Path(out), "prepare")
    else:
        fs.pipe_file(key, sink.getvalue())
        manifest = Manifest.parse(fs.cat_file(f"{root}/{MANIFEST}"))
        entry = replace(
            manifest.files[shard],
            size=len(sink.getvalue()),
            sha256=hashlib.sha256(sink.getvalue()).hexdigest(),
            etag=fs.info(key)["ETag"],
        )
        fs.pipe_file(f"{root}/{MANIFEST}", Manifest(manifest.kind, {**manifest.files, shard: entry}).text().encode())
    return table["sample_id"][0].as_py()


@pytest.mark.parametrize("name", BREAKAGES)
def test_validate_without_source_fails_on_a_broken_embedded_file(name: str, out: str, capsys) -> None:
    shard, column, value, problem = BREAKAGES[name]
    sample_id = embed(out, shard, column, value)
    config = shard.split("/")[0]
    report = validate_prepared(out)  # no --source
    assert {check.name for check in report.with_status("fail")} == {"embedded_media"}, report.summary()
    (line,) = report["embedded_media"].offenders
    assert line.startswith(f"{shard} (config {config}): sample {sample_id} {problem}"), line
    if column == "midi":  # the audio shards embed the same MIDI file, intact
        assert report["embedded_media"].details["checked"] > 1
    # The command line, with worker processes: exit 1, the line in the report.
    assert main(["validate", "--prepared", out, "--num-proc", "2"]) == 1
    assert f"{shard} (config {config}): sample {sample_id} {problem}" in capsys.readouterr().out


def test_an_intact_output_passes_and_the_manifest_check_reads_no_media_shard_again(
    out: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every embedded value is checked; the manifest check takes the sha256 the pass computed, so a media shard is
    read once (a local copy's shards are new files to the hash cache: they are hashed, by the pass)."""
    hashed: list[str] = []
    files, stream = manifest_module.file_sha256s, prepared_files.stream_sha256
    monkeypatch.setattr(manifest_module, "file_sha256s", lambda paths: hashed.extend(map(str, paths)) or files(paths))
    monkeypatch.setattr(prepared_files, "stream_sha256", lambda s: hashed.append(s.path) or stream(s))
    report = validate_prepared(out)
    assert report.ok(), report.summary()
    # 24 samples: audio and MIDI in `audio`, MIDI in `midi_only`.
    assert report["embedded_media"].details["checked"] == 3 * 24
    assert any("labels_only/" in path for path in hashed), hashed  # the other files are hashed as before
    assert not [path for path in hashed if "/audio/" in path or "/midi_only/" in path], hashed


@pytest.mark.parametrize("name", ["text_as_flac", "midi_without_header"])
def test_publish_refuses_before_anything_reaches_the_hub(name: str, hub: FakeHub, out: str, capsys) -> None:
    shard, column, value, problem = BREAKAGES[name]
    sample_id = embed(out, shard, column, value)
    assert main(["publish", "alice/sousa", "--prepared", out, "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sousa-builder publish: error: {out} fails validation, so nothing was published"), err
    assert f"sample {sample_id} {problem}" in err and err.count("\n") == 1, err
    assert not hub.requests_for("create_repo", "preupload", "commit") and not hub.lfs_uploads


def test_the_reader_hashes_every_byte_once_in_order_and_serves_reads_from_what_it_kept() -> None:
    data = bytes(range(256)) * 1000
    stream = io.BytesIO(data)
    reader = HashingReader(stream, len(data))
    reader.load(1000, 5000)
    reader.seek(1200)
    assert reader.read(100) == data[1200:1300]
    reader.load(500, 800)  # going back: read again, hashed once
    reader.seek(600)
    assert bytes(reader.read(10)) == data[600:610]
    reader.seek(len(data) - 5)  # outside what it kept: read from the file
    assert bytes(reader.read()) == data[-5:]
    assert reader.finish() == hashlib.sha256(data).hexdigest()
    with pytest.raises(OSError, match="ends at"):
        HashingReader(io.BytesIO(data[:10]), 20).finish()
