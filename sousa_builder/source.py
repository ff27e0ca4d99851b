"""A SOUSA output directory as the builder reads it: one typed row per sample, with its split and media paths.

A source is read only once it passes every rule about its labels (`validate.rules`, the rules `validate`
reports) and every media file it needs passes the media_files rule; nothing is written before. The media
bytes are checked again as they are read into a shard (`media.read_media_array`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .errors import SourceFormatError, SourceNotFoundError
from .media import MEDIA_FOLDERS, LocalMedia, RemoteMedia, forget_resolved_folders, media_files
from .source_files import (
    EXERCISES_SCHEMA,
    LABEL_FILES,
    SAMPLES_SCHEMA,
    SPLIT_KEYS,
    SPLITS_FILE,
    read_label_table,
    read_splits_file,
)
from .storage import filesystem
from .validate.media import MEDIA_COLUMNS, MediaRefs
from .validate.media import media_files as media_files_rule
from .validate.rules import refuse_failures, refuse_invalid_labels

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SOUSA_DATA_DIR"
DEFAULT_DATA_DIR = Path("output") / "dataset"  # where the SOUSA generator writes by default


# What to do about a directory that holds no SOUSA dataset: one that was named (an argument, on the command
# line or in Python), and one that was not (found through the environment or the default).
GIVE_THE_OUTPUT_DIRECTORY = "Give the generator's output directory: the folder that holds labels/ and splits.json."
NAME_THE_OUTPUT_DIRECTORY = f"Point to the generator's output directory with data_dir=..., or set ${DATA_DIR_ENV}."


@dataclass(frozen=True)
class DataDir:
    """A candidate SOUSA directory, how it was chosen and what to do if it is not one (for error messages)."""

    path: Path
    origin: str
    hint: str = GIVE_THE_OUTPUT_DIRECTORY


def resolve_data_dir(data_dir: str | os.PathLike | None = None, origin: str = "the data_dir argument") -> DataDir:
    """`data_dir` if given, else `$SOUSA_DATA_DIR`, else `./output/dataset`, made absolute.

    `origin` names the given `data_dir` in messages (the command line passes "the DATA_DIR argument").
    """
    if data_dir is not None:
        return DataDir(Path(data_dir).expanduser().absolute(), origin)
    if os.environ.get(DATA_DIR_ENV):
        return DataDir(
            Path(os.environ[DATA_DIR_ENV]).expanduser().absolute(), f"${DATA_DIR_ENV}", NAME_THE_OUTPUT_DIRECTORY
        )
    return DataDir(
        DEFAULT_DATA_DIR.absolute(),
        f"the default ./{DEFAULT_DATA_DIR} (no data_dir, ${DATA_DIR_ENV} unset)",
        NAME_THE_OUTPUT_DIRECTORY,
    )


def source_signature(root: Path) -> str:
    """A digest of what a SOUSA directory holds: the path and `_stamp` of its label files, splits.json and every
    file under audio/ and midi/. It changes when any of them is written or replaced, labels or media alone."""
    stamps = []
    for relative in (*LABEL_FILES.values(), SPLITS_FILE):
        try:
            stamps.append((relative, *_stamp(os.stat(root / relative))))
        except OSError:
            stamps.append((relative, -1, -1, -1, -1))
    for folder in MEDIA_FOLDERS:
        stamps += sorted(_stamps_under(os.path.join(root, folder), folder))
    return hashlib.sha256(repr(stamps).encode()).hexdigest()[:16]


def _stamp(info: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file is written or replaced: size, modification time, and the inode and status-change
    time, which a copy that keeps the size and sets the old modification time back (`cp -p`, `rsync -t`,
    `touch -r`) changes all the same."""
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns


def _stamps_under(folder: str, relative: str) -> Iterator[tuple[str, int, int, int, int]]:
    """(relative path, `_stamp`) of every file below `folder`."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = f"{relative}/{entry.name}"
        if entry.is_dir():
            yield from _stamps_under(entry.path, name)
        else:
            yield name, *_stamp(entry.stat())


class SousaSource:
    """A checked SOUSA directory: one row per sample with its scores, split and media paths.

    `rows` is sorted by sample_id and holds the declared sample and score columns plus `split`,
    `audio_path` and `midi_path` (MIDI resolved through the augmentation group). The label files are read
    from `root`; the media files from `media_root` (the same folder, or the URL the labels came from).
    """

    def __init__(self, root: Path, rows: pa.Table, media_root: Path | str | None = None):
        self.root = root
        self.rows = rows
        self.media_root = media_root if media_root is not None else root

    @classmethod
    def open_url(cls, url: str, scratch: Path) -> SousaSource:
        """`open` a SOUSA directory at a URL: its label files and splits.json are copied into `scratch` (the media,
        nearly all of its bytes, stay where they are and are read from there)."""
        fs, base = filesystem(url)
        if not fs.isfile(f"{base}/{LABEL_FILES['samples']}"):
            found = f"expected {LABEL_FILES['samples']} there" if fs.isdir(base) else "nothing there"
            raise SourceNotFoundError(f"No SOUSA dataset at {url}: {found}. {GIVE_THE_OUTPUT_DIRECTORY}")
        for relative in (*LABEL_FILES.values(), SPLITS_FILE):
            if fs.isfile(f"{base}/{relative}"):
                (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{base}/{relative}", str(scratch / relative))
        try:
            source = cls.open(DataDir(scratch, url))
        except (SourceFormatError, SourceNotFoundError) as err:  # name the files where the user keeps them
            raise type(err)(str(err).replace(str(scratch), url)) from None
        source.media_root = url
        return source

    @functools.cached_property
    def media(self) -> LocalMedia | RemoteMedia:
        """The media files under `media_root` (a URL's listed once, for every check and size of this run)."""
        return media_files(self.media_root)

    @classmethod
    def open(cls, data_dir: str | os.PathLike | DataDir | None = None) -> SousaSource:
        """Read the labels and splits of a SOUSA directory, once they pass every label rule (`validate.rules`).

        Args:
            data_dir: the directory (see `resolve_data_dir` for the default), or a `DataDir` naming its origin.

        Returns:
            The source, one row per sample. Media are checked separately (`check_media`, and as they are read).

        Raises:
            SourceNotFoundError: no SOUSA dataset there (no labels/samples.parquet).
            SourceFormatError: a label rule fails; the message names the rule, samples and values.
        """
        where = data_dir if isinstance(data_dir, DataDir) else resolve_data_dir(data_dir)
        root = where.path
        if not (root / LABEL_FILES["samples"]).is_file():
            found = f"expected {LABEL_FILES['samples']} there" if root.is_dir() else "no such directory"
            raise SourceNotFoundError(f"No SOUSA dataset at {root} (from {where.origin}): {found}. {where.hint}")
        refuse_invalid_labels(root)

        samples = read_label_table(root / LABEL_FILES["samples"], SAMPLES_SCHEMA)
        exercises = read_label_table(root / LABEL_FILES["exercises"], EXERCISES_SCHEMA)
        rows = samples.join(exercises, "sample_id", join_type="inner")  # one exercise row per sample: a rule
        rows = rows.select([*SAMPLES_SCHEMA.names, *EXERCISES_SCHEMA.names[1:]]).sort_by("sample_id")
        rows = rows.append_column("split", _splits_of(rows["profile_id"], root))
        rows = rows.set_column(rows.schema.get_field_index("midi_path"), "midi_path", _midi_through_groups(rows))
        return cls(root, rows.combine_chunks())

    @property
    def split_names(self) -> list[str]:
        """Splits that have at least one sample, in train / validation / test order."""
        present = set(self.rows["split"].to_pylist())
        return [split for split in SPLIT_KEYS if split in present]

    def split_rows(self, split: str) -> pa.Table:
        """The rows of one split, sorted by sample_id."""
        return self.rows.filter(pc.equal(self.rows["split"], split))

    def label_row_counts(self) -> dict[str, pa.ChunkedArray]:
        """The stroke and measure rows each sample has (num_strokes, num_measures), aligned with `rows`: what
        `LabelBuckets.write` waits for before it sorts a bucket."""
        return {"strokes": self.rows["num_strokes"], "measures": self.rows["num_measures"]}

    def check_media(self, with_midi: bool, with_audio: bool) -> None:
        """Refuse the source if a media file the rows need fails the media_files rule (`validate.media`): absent,
        unreadable, outside the root, not a regular file, or with a header that is not its kind's.

        Raises:
            SourceFormatError: naming the files and samples.
        """
        if not (with_midi or with_audio):
            return
        forget_resolved_folders()  # folders are resolved once per check (and then per read)
        refs = MediaRefs.read(self.media_root, self.rows.select(MEDIA_COLUMNS), None, self.media)
        refuse_failures([media_files_rule(refs, audio=with_audio, midi=with_midi)], str(self.media_root))

    def media_bytes(self, rows: pa.Table, column: str) -> int:
        """The total size of the media files of `rows` in `column` (audio_path or midi_path)."""
        return sum(self.media.sizes(rows[column].to_pylist()))


def _splits_of(profiles: pa.ChunkedArray, root: Path) -> pa.Array:
    """The split of each profile in `profiles`: the split whose list in splits.json holds it (a rule: one)."""
    splits, _ = read_splits_file(root)
    names = [split for split, listed in splits.items() for _ in listed]
    listed = pa.array([profile for profile in splits.values() for profile in profile], pa.string())
    return pa.array(names, pa.string()).take(pc.index_in(profiles, value_set=listed)).combine_chunks()


def _midi_through_groups(rows: pa.Table) -> pa.Array:
    """Each row's MIDI path, taken from its augmentation group where the row has none.

    Upstream writes the .mid only for the first augmentation of a performance; the other
    variants of the group play the identical performance.
    """
    groups, paths = rows["augmentation_group_id"].to_pylist(), rows["midi_path"].to_pylist()
    group_midi: dict[str, str] = {}
    for group, path in zip(groups, paths):  # rows are sorted by sample_id: the first file wins
        if group is not None and path is not None:
            group_midi.setdefault(group, path)
    return pa.array([path or group_midi.get(group) for group, path in zip(groups, paths)], pa.string())
