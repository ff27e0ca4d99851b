"""The Hub layout in one module: the names prepare writes are the names publish and validate recognise."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sousa_builder import layout
from sousa_builder.builder import config_names
from sousa_builder.hashes import sha256_file
from sousa_builder.labels import LABEL_TABLES


def test_every_file_prepare_writes_is_recognised_as_ours(prepared_dir: Path) -> None:
    written = [p.relative_to(prepared_dir).as_posix() for p in prepared_dir.rglob("*.parquet")]
    configs = {path.split("/")[0] for path in written} - {layout.AUXILIARY_DIR}
    assert written and all(layout.is_ours(path, configs) for path in written)
    for path in written:
        folder, _, name = path.rpartition("/")
        if folder != layout.AUXILIARY_DIR:
            assert layout.shard_split(name) in ("train", "validation", "test"), path


def test_the_layouts_names_are_the_builders_and_the_labels() -> None:
    assert set(layout.AUXILIARY_TABLES) == set(LABEL_TABLES)
    assert list(layout.CONFIGS) == config_names()


@pytest.mark.parametrize(
    ("path", "ours"),
    [
        ("audio/train-00000-of-00002.parquet", True),
        ("audio/validation-00001-of-00002.parquet", True),
        ("auxiliary/strokes.parquet", True),
        ("data/train-00000-of-00001.parquet", True),  # an older layout's shard
        ("audio/my_eval_subset.parquet", False),
        ("audio/train-extra.parquet", False),
        ("audio/2023/train-00000-of-00001.parquet", False),  # deeper than a config folder
        ("auxiliary/my_notes.parquet", False),
        ("data/2023/backup.parquet", False),
        ("midi_only/train-00000-of-00001.parquet", False),  # a config not being pushed
        ("README.md", False),
    ],
)
def test_publish_may_delete_only_names_this_tool_writes(path: str, ours: bool) -> None:
    assert layout.is_ours(path, {"audio", "labels_only"}, older_layout=True) is ours


@pytest.mark.parametrize(
    "path",
    ["audio/my_demo.flac", "audio/takes/x.flac", "midi/notes.mid", "midi/a/b.mid", "data/train-00000-of-00001.parquet"],
)
def test_loose_media_are_ours_only_beside_the_older_layouts_label_tables(path: str) -> None:
    """Loose FLAC and MIDI under audio/ and midi/, and shards under data/ (push_to_hub's default config), are what
    the older layout wrote, or a user's own files: deleted only from a repo that holds its label tables."""
    assert layout.is_ours(path, {"audio"}, layout.holds_older_layout([path, "README.md"])) is False
    assert layout.is_ours(path, {"audio"}, layout.holds_older_layout([path, "labels/samples.parquet"])) is True


def test_shard_names_round_trip() -> None:
    name = layout.shard_name("train", 3, 12)
    assert name == "train-00003-of-00012.parquet"
    assert layout.shard_split(name) == "train"
    assert Path("x", name).match(layout.shard_glob("train"))


def test_hashing_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """`publish` hashes every file it pushes: a FIFO is refused by its type, not read (which would block)."""
    fifo = tmp_path / "train-00000-of-00001.parquet"
    os.mkfifo(fifo)
    code = (
        "import sys\nfrom pathlib import Path\nfrom sousa_builder.errors import NotARegularFileError\n"
        "from sousa_builder.hashes import sha256_file\n"
        f"try:\n    sha256_file(Path({str(fifo)!r}))\nexcept NotARegularFileError as err:\n    print(err)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == f"{fifo}: a FIFO (named pipe); only regular files are hashed and published"
    regular = tmp_path / "file"
    regular.write_bytes(b"abc")
    assert sha256_file(regular) == (hashlib.sha256(b"abc").hexdigest(), 3)
