"""One set of rules: `prepare` refuses a source exactly when `validate` fails it, names what `validate` names,
and leaves an earlier OUT as it was; media are checked again as they are read into a shard."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from s3_server import S3
from test_refusals import BREAKAGES as REFUSAL_BREAKAGES
from test_validate import (
    SOURCE_BREAKAGES,
    audio_missing,
    audio_resampled,
    audio_truncated,
    labels,
    midi_garbage,
    midi_without_notes,
    profile_in_no_split,
    rewrite,
    set_where,
    victim,
)

import sousa_builder.builder
import sousa_builder.errors
import sousa_builder.source
from sousa_builder.cli import main
from sousa_builder.validate import validate_source


def num_strokes_999(d: Path) -> str:
    row = victim(d)
    rewrite(
        labels(d, "samples"), lambda t: set_where(t, "num_strokes", lambda r: r["sample_id"] == row["sample_id"], 999)
    )
    return f"{row['sample_id']} (num_strokes 999, {row['num_strokes']} rows)"


def tempo_negative(d: Path) -> str:
    rewrite(labels(d, "samples"), lambda t: set_where(t, "tempo_bpm", lambda r: True, -120))
    return f"{victim(d)['sample_id']} tempo_bpm -120"


def stroke_index_77(d: Path) -> str:
    row = victim(d)
    first = lambda r: r["sample_id"] == row["sample_id"] and r["index"] == 0  # noqa: E731
    rewrite(labels(d, "strokes"), lambda t: set_where(t, "index", first, 77))
    return f"{row['sample_id']} ({row['num_strokes']} rows; missing 0; outside 0-{row['num_strokes'] - 1}: 77)"


def flac_without_streaminfo(d: Path) -> str:
    row = victim(d)
    (d / row["audio_path"]).write_bytes(b"fLaC\x00\x00\x00\x22")  # the magic and a block header, nothing after
    return f"{row['audio_path']} (sample {row['sample_id']}): not a FLAC file (fLaC is not followed by a whole"


def flac_cut_short(d: Path) -> str:
    row = victim(d)
    path = d / row["audio_path"]
    path.write_bytes(path.read_bytes()[:-20])  # the last frame loses its end: header and length intact
    return f"{row['audio_path']} (sample {row['sample_id']}): does not decode"


def media_unreferenced(d: Path) -> str:
    shutil.copy(d / victim(d)["audio_path"], d / "audio" / "stray.flac")  # a warning only: both commands pass
    return ""


def untouched(d: Path) -> str:
    return ""


BATTERY = [
    *SOURCE_BREAKAGES, *REFUSAL_BREAKAGES, num_strokes_999, tempo_negative, stroke_index_77,
    flac_without_streaminfo, flac_cut_short, media_unreferenced, untouched,
]  # fmt: skip


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def earlier_out(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An earlier prepare's OUT (labels_only: what a refused run must leave as it was)."""
    out = tmp_path_factory.mktemp("earlier") / "out"
    assert main(["prepare", str(sample_dir), "--out", str(out), "--configs", "labels_only"]) == 0
    return out


@pytest.mark.parametrize("breakage", BATTERY, ids=lambda f: f.__name__)
def test_prepare_refuses_exactly_what_validate_fails(
    breakage: Callable[[Path], object], source_copy: Path, earlier_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = breakage(source_copy)
    before = files(earlier_out)
    report = validate_source(source_copy)
    capsys.readouterr()
    code = main(["prepare", str(source_copy), "--out", str(earlier_out)])
    err = capsys.readouterr().err
    failed = report.with_status("fail")
    assert code == (1 if failed else 0), err or report.summary()
    if not failed:
        return
    # The one line names what validate names: a failing rule's first offender, and the breakage's own words.
    assert err.count("\n") == 1 and "Traceback" not in err
    assert any(check.offenders[0] in err for check in failed), (err, [c.offenders[:1] for c in failed])
    text = expected[1] if isinstance(expected, tuple) else expected
    assert text in err
    assert any(text in check.text for check in failed) or isinstance(expected, str)
    assert files(earlier_out) == before
    assert sorted(p.name for p in earlier_out.parent.iterdir()) == ["out"]  # no staging folder left


def replace_after_check(monkeypatch: pytest.MonkeyPatch, path: Path, replace: Callable[[Path], None]) -> None:
    """Replace `path` once the source's media have passed their first check, before any shard is written."""
    check_media = sousa_builder.source.SousaSource.check_media

    def check_then_replace(self, *args, **kwargs):
        check_media(self, *args, **kwargs)
        replace(path)

    monkeypatch.setattr(sousa_builder.source.SousaSource, "check_media", check_then_replace)


def with_garbage(path: Path) -> None:
    path.write_bytes(b"fLaC" + os.urandom(4000))


def with_link_outside(path: Path) -> None:
    outside = path.parents[3] / "outside.flac"  # beside the source folder
    shutil.copy(path, outside)
    path.unlink()
    path.symlink_to(outside)


@pytest.mark.parametrize(
    ("replace", "problem"),
    [(with_garbage, "not a FLAC file"), (with_link_outside, "escapes the dataset root")],
    ids=["garbage", "link_outside"],
)
def test_media_replaced_after_the_first_check_are_refused_as_read(
    replace: Callable[[Path], None],
    problem: str,
    source_copy: Path,
    earlier_out: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = victim(source_copy)
    replace_after_check(monkeypatch, source_copy / row["audio_path"], replace)
    before = files(earlier_out)
    assert main(["prepare", str(source_copy), "--out", str(earlier_out)]) == 1
    err = capsys.readouterr().err
    assert f"{row['audio_path']} (sample {row['sample_id']}): {problem}" in err
    assert files(earlier_out) == before


def test_the_builder_refuses_what_validate_fails(source_copy: Path, tmp_path: Path) -> None:
    """The loading script's builder reads through the same rules (here: num_strokes against the stroke rows)."""
    expected = num_strokes_999(source_copy)
    builder = sousa_builder.builder.Sousa(config_name="labels_only", data_dir=str(source_copy), cache_dir=str(tmp_path))
    with pytest.raises(sousa_builder.errors.SourceFormatError, match="stroke_counts") as caught:
        builder.download_and_prepare()
    assert expected in str(caught.value)


# A source in a bucket is read through fsspec: the same rules, label and media (headers from its listing, the
# embedded bytes as they are fetched). One corruption of each kind.
BUCKET_BATTERY = [
    num_strokes_999, profile_in_no_split, audio_missing, flac_without_streaminfo, audio_truncated, audio_resampled,
    midi_garbage, midi_without_notes, untouched,
]  # fmt: skip


@pytest.mark.parametrize("breakage", BUCKET_BATTERY, ids=lambda f: f.__name__)
def test_a_bucket_source_is_refused_by_the_same_rules(
    breakage: Callable[[Path], object], source_copy: Path, s3: S3, capsys: pytest.CaptureFixture[str]
) -> None:
    breakage(source_copy)
    failed = validate_source(source_copy).with_status("fail")
    bucket = f"s3://{s3.bucket()}"
    source = s3.upload(source_copy, f"{bucket}/source")
    capsys.readouterr()
    code = main(["prepare", source, "--out", f"{bucket}/out", "--configs", "audio"])
    err = capsys.readouterr().err
    assert code == (1 if failed else 0), err
    if failed:
        assert any(check.offenders[0].split(" (sample ")[-1] in err for check in failed), err
        assert source in err and "Traceback" not in err
        assert s3.keys(f"{bucket}/out") == []  # the staging prefix is removed


def test_ray_tasks_refuse_by_the_same_rules(
    source_copy: Path, earlier_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Media checked as read run inside the Ray task that writes the shard: the same one line, OUT as it was."""
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    check, text = audio_truncated(source_copy)  # passes the header check; fails as its bytes are read
    before = files(earlier_out)
    code = main(["prepare", str(source_copy), "--out", str(earlier_out), "--engine", "ray", "--num-proc", "2"])
    err = capsys.readouterr().err
    assert code == 1 and check == "audio_decode"
    assert err.startswith("sousa-builder prepare: error: ") and text in err and err.count("\n") == 1, err
    assert files(earlier_out) == before
