"""Read a SOUSA output directory into checked, typed label tables.

Everything the builder refuses is refused here, before any output is written: missing or
malformed label files and splits.json, duplicate samples, samples without a split or without
exercise scores, and media paths that are missing, unreadable or outside the dataset root.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import ClassLabel

from .errors import SourceFormatError, SourceNotFoundError
from .features import (
    MEASURE_FIELDS,
    NULLABLE_INT_FIELDS,
    SAMPLE_COLUMNS,
    SCORE_COLUMNS,
    STROKE_FIELDS,
    class_label_columns,
)
from .media import MEDIA_FOLDERS, LocalMedia, RemoteMedia, forget_resolved_folders, media_files
from .storage import filesystem

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SOUSA_DATA_DIR"
DEFAULT_DATA_DIR = Path("output") / "dataset"  # where the SOUSA generator writes by default

LABEL_FILES = {
    "samples": "labels/samples.parquet",
    "exercises": "labels/exercises.parquet",
    "strokes": "labels/strokes.parquet",
    "measures": "labels/measures.parquet",
}
SPLITS_FILE = "splits.json"
# Split name -> its key in splits.json, in the order splits are written.
SPLIT_KEYS = {"train": "train_profile_ids", "validation": "val_profile_ids", "test": "test_profile_ids"}
MEDIA_PATH_COLUMNS = ("audio_path", "midi_path")
# How many offending items an error message lists before "and N more".
SHOWN = 5

_ID = ("sample_id", pa.string())


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
    """A digest of what a SOUSA directory holds: the path, size and modification time of its label files,
    splits.json and every file under audio/ and midi/. It changes when the directory is regenerated
    (about 0.5 s at 100k samples)."""
    stamps = []
    for relative in (*LABEL_FILES.values(), SPLITS_FILE):
        try:
            info = os.stat(root / relative)
            stamps.append((relative, info.st_size, info.st_mtime_ns))
        except OSError:
            stamps.append((relative, -1, -1))
    for folder in MEDIA_FOLDERS:
        stamps += sorted(_stamps_under(os.path.join(root, folder), folder))
    return hashlib.sha256(repr(stamps).encode()).hexdigest()[:16]


def _stamps_under(folder: str, relative: str) -> Iterator[tuple[str, int, int]]:
    """(relative path, size, mtime) of every file below `folder`, from the directory listing's own stat."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = f"{relative}/{entry.name}"
        if entry.is_dir():
            yield from _stamps_under(entry.path, name)
        else:
            info = entry.stat()
            yield name, info.st_size, info.st_mtime_ns


def listing(items: Sequence[str], shown: int = SHOWN) -> str:
    """'a, b, c and 4 more': a short, bounded list for error messages."""
    head = ", ".join(str(item) for item in items[:shown])
    return head if len(items) <= shown else f"{head} and {len(items) - shown} more"


def _arrow_type(feature) -> pa.DataType:
    if isinstance(feature, ClassLabel):  # the source writes the class name; the output stores its id
        return pa.string()
    return feature.pa_type if hasattr(feature, "pa_type") else pa.type_for_alias(feature.dtype)


def _schema(fields: Iterable[tuple[str, object, str]]) -> pa.Schema:
    return pa.schema([(name, _arrow_type(feature)) for name, feature, _ in fields])


SAMPLES_SCHEMA = pa.schema([*_schema(SAMPLE_COLUMNS), *(pa.field(c, pa.string()) for c in MEDIA_PATH_COLUMNS)])
EXERCISES_SCHEMA = pa.schema([_ID, *_schema(SCORE_COLUMNS)])
STROKES_SCHEMA = pa.schema([_ID, *_schema(STROKE_FIELDS)])
MEASURES_SCHEMA = pa.schema([_ID, *_schema(MEASURE_FIELDS)])
# Each label file (a key of LABEL_FILES) as read: declared columns, declared types.
LABEL_SCHEMAS = {
    "samples": SAMPLES_SCHEMA,
    "exercises": EXERCISES_SCHEMA,
    "strokes": STROKES_SCHEMA,
    "measures": MEASURES_SCHEMA,
}
# Declared int, written by upstream as an all-null column of Arrow type null.
ALL_NULL_COLUMNS = ("aug_bit_depth", "aug_sample_rate")


def upstream_types(field: pa.Field) -> tuple[pa.DataType, ...]:
    """The Arrow types upstream writes for a declared column (sousa-source-format.md), today's first."""
    if field.type == pa.string():
        return (pa.large_string(), pa.string())
    if field.name in NULLABLE_INT_FIELDS:
        return (pa.float64(), pa.int64())
    if field.name in ALL_NULL_COLUMNS:
        return (pa.null(), pa.int64())
    return (field.type,)


def _normalize_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Cast one source column to its declared type; NaN becomes null (upstream's 'missing')."""
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column.cast(target)


def convert_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """The conversion `read_label_table` applies to a source column (validation accepts exactly what it accepts).

    Raises `pa.ArrowInvalid` or `pa.ArrowNotImplementedError` when the column does not convert.
    """
    return _normalize_column(column, target)


def read_label_table(path: Path, schema: pa.Schema) -> pa.Table:
    """Read a label file as `schema`: declared columns only, declared types, NaN as null.

    A missing column is an error naming the file.
    """
    _refuse_missing_columns(path, schema)
    try:
        table = pq.read_table(path, columns=schema.names)
    except (OSError, pa.ArrowException) as err:
        raise SourceFormatError(f"{path}: cannot read it as Parquet ({err})") from err
    return _normalized(table, schema, path)


def read_label_batches(path: Path, schema: pa.Schema, rows: int) -> Iterator[pa.Table]:
    """`read_label_table(path, schema)` in tables of up to `rows` rows, holding one at a time."""
    _refuse_missing_columns(path, schema)
    try:
        for batch in pq.ParquetFile(path).iter_batches(rows, columns=schema.names):
            yield _normalized(pa.Table.from_batches([batch]), schema, path)
    except (OSError, pa.ArrowException) as err:
        raise SourceFormatError(f"{path}: cannot read it as Parquet ({err})") from err


def _refuse_missing_columns(path: Path, schema: pa.Schema) -> None:
    """Refuse a label file whose schema does not read or lacks a declared column."""
    try:
        present = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as err:
        raise SourceFormatError(f"{path}: cannot read it as Parquet ({err})") from err
    missing = [name for name in schema.names if name not in present]
    if missing:
        raise SourceFormatError(f"{path}: missing column(s) {', '.join(missing)}")


def _normalized(table: pa.Table, schema: pa.Schema, path: Path) -> pa.Table:
    columns = []
    for field in schema:
        try:
            columns.append(_normalize_column(table[field.name], field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            found = table.schema.field(field.name).type
            raise SourceFormatError(
                f"{path}: column {field.name!r} has type {found}, which does not convert to {field.type}"
                f"{unconvertible_values(table, field)} ({first_line(err)})"
            ) from err
    return pa.Table.from_arrays(columns, schema=schema)


def unconvertible_values(table: pa.Table, field: pa.Field) -> str:
    """': sample S (value V), ...' for the first rows of `table` whose `field` value does not convert (or '')."""
    column = table[field.name].combine_chunks()
    ids = table["sample_id"].combine_chunks() if "sample_id" in table.column_names else None
    bad: list[int] = []
    for start in range(0, len(column), 4096):  # only on the error path: find the rows, a block at a time
        block = column.slice(start, 4096)
        try:
            _normalize_column(pa.chunked_array([block]), field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad += [start + i for i in range(len(block)) if not _converts(block.slice(i, 1), field.type)]
        if len(bad) >= SHOWN:
            break
    shown = [f"sample {ids[i].as_py() if ids is not None else f'row {i}'} ({column[i].as_py()!r})" for i in bad[:SHOWN]]
    return f": {', '.join(shown)}" if shown else ""


def _converts(value: pa.Array, target: pa.DataType) -> bool:
    try:
        _normalize_column(pa.chunked_array([value]), target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def first_line(error: BaseException) -> str:
    """The first line of an error's message (pyarrow's can run on with schemas)."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _duplicates(column: pa.ChunkedArray) -> list[str]:
    counts = pc.value_counts(column)
    return sorted(counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist())


def read_splits_file(root: Path) -> tuple[dict[str, list[str]] | None, list[str]]:
    """split -> the profile ids splits.json lists for it, and every problem with the file (None if any)."""
    path = root / SPLITS_FILE
    if not path.is_file():
        return None, [f"{SPLITS_FILE}: missing; it maps each profile_id to train/validation/test"]
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [f"{SPLITS_FILE}: not valid JSON ({err})"]
    if not isinstance(document, dict):
        return None, [f"{SPLITS_FILE}: expected a JSON object with {', '.join(SPLIT_KEYS.values())}"]
    splits, problems = {}, []
    for split, key in SPLIT_KEYS.items():
        profiles = document.get(key)
        if isinstance(profiles, list) and all(isinstance(profile, str) for profile in profiles):
            splits[split] = profiles
            continue
        if key not in document:
            found = "missing"
        elif isinstance(profiles, list):
            found = "a list with items that are not strings"
        else:
            found = f"a {type(profiles).__name__}"
        problems.append(f"{SPLITS_FILE}: {key!r} must be a list of profile id strings, found {found}")
    return (None if problems else splits), problems


def read_splits(root: Path) -> dict[str, str]:
    """profile_id -> split name, from splits.json; refuses a problem in the file or a profile in two splits."""
    splits, problems = read_splits_file(root)
    if splits is None:
        raise SourceFormatError(str(root / problems[0]))  # each problem starts with the file name
    split_of: dict[str, str] = {}
    for split, profiles in splits.items():
        for profile in profiles:
            if profile in split_of and split_of[profile] != split:
                raise SourceFormatError(
                    f"{root / SPLITS_FILE}: profile {profile} is listed in two splits ({split_of[profile]} and {split})"
                )
            split_of[profile] = split
    return split_of


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
        """Read and check the labels and splits of a SOUSA directory (media are checked separately)."""
        where = data_dir if isinstance(data_dir, DataDir) else resolve_data_dir(data_dir)
        root = where.path
        if not (root / LABEL_FILES["samples"]).is_file():
            found = f"expected {LABEL_FILES['samples']} there" if root.is_dir() else "no such directory"
            raise SourceNotFoundError(f"No SOUSA dataset at {root} (from {where.origin}): {found}. {where.hint}")
        for name, relative in LABEL_FILES.items():
            if not (root / relative).is_file():
                raise SourceFormatError(f"{root / relative}: missing; a SOUSA dataset needs its {name} labels")
        split_of = read_splits(root)

        samples = read_label_table(root / LABEL_FILES["samples"], SAMPLES_SCHEMA)
        if samples.num_rows == 0:
            raise SourceFormatError(f"{root / LABEL_FILES['samples']}: no samples (the file has no rows)")
        _refuse_duplicates(samples["sample_id"], root / LABEL_FILES["samples"], "sample_id")
        _refuse_unknown_classes(samples, root / LABEL_FILES["samples"])
        exercises = read_label_table(root / LABEL_FILES["exercises"], EXERCISES_SCHEMA)
        exercises = exercises.filter(pc.is_in(exercises["sample_id"], value_set=samples["sample_id"]))
        _refuse_duplicates(exercises["sample_id"], root / LABEL_FILES["exercises"], "exercise row for sample")

        rows = samples.join(exercises, "sample_id", join_type="left outer")
        without_scores = rows.filter(pc.invert(pc.is_in(rows["sample_id"], value_set=exercises["sample_id"])))
        if without_scores.num_rows:
            ids = sorted(without_scores["sample_id"].to_pylist())
            raise SourceFormatError(
                f"{root / LABEL_FILES['exercises']}: {len(ids)} sample(s) have no exercise scores: {listing(ids)}"
            )
        rows = rows.select([*SAMPLES_SCHEMA.names, *EXERCISES_SCHEMA.names[1:]]).sort_by("sample_id")
        rows = rows.append_column("split", _splits_of(rows, split_of, root))
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

    def check_media(self, with_midi: bool, with_audio: bool) -> None:
        """Refuse if any media file the rows need is absent, unreadable or outside the root."""
        needed = [("midi_path", "MIDI")] * with_midi + [("audio_path", "audio")] * with_audio
        forget_resolved_folders()  # folders are resolved once per check (and then per read)
        for column, kind in needed:
            ids, paths = self.rows["sample_id"].to_pylist(), self.rows[column].to_pylist()
            no_path = [sid for sid, path in zip(ids, paths) if path is None]
            if no_path:
                what = "its augmentation group has no MIDI file" if column == "midi_path" else "audio_path is null"
                raise SourceFormatError(f"{len(no_path)} sample(s) have no {kind} file ({what}): {listing(no_path)}")
            found = self.media.problems(paths)
            problems = [f"{path} (sample {sid}): {problem}" for sid, path, problem in zip(ids, paths, found) if problem]
            if problems:
                raise SourceFormatError(
                    f"{self.media_root}: {len(problems)} {kind} file(s) unusable: {listing(problems)}"
                )

    def media_bytes(self, rows: pa.Table, column: str) -> int:
        """The total size of the media files of `rows` in `column` (audio_path or midi_path)."""
        return sum(self.media.sizes(rows[column].to_pylist()))


def _refuse_duplicates(column: pa.ChunkedArray, path: Path, what: str) -> None:
    duplicates = _duplicates(column)
    if duplicates:
        raise SourceFormatError(f"{path}: duplicate {what} {listing(duplicates)}")


def _refuse_unknown_classes(samples: pa.Table, path: Path) -> None:
    """Refuse a sample whose class column (skill_tier, rudiment_slug, ...) holds a value outside its vocabulary:
    the output stores class ids, which only the documented names have."""
    for column, label in class_label_columns().items():
        known = pc.fill_null(pc.is_in(samples[column], value_set=pa.array(label.names)), False)
        bad = samples.filter(pc.invert(known))
        if bad.num_rows:
            names = f" ({', '.join(label.names)})" if len(label.names) <= 6 else ""
            found = [f"{sid} ({value!r})" for sid, value in zip(bad["sample_id"].to_pylist(), bad[column].to_pylist())]
            raise SourceFormatError(
                f"{path}: {bad.num_rows} sample(s) have a {column} that is not one of its {len(label.names)} "
                f"documented values{names}: {listing(found)}"
            )


def _splits_of(rows: pa.Table, split_of: dict[str, str], root: Path) -> pa.Array:
    profiles = rows["profile_id"].to_pylist()
    splits = [split_of.get(profile) for profile in profiles]
    orphans = [
        f"{sid} (profile {p})" for sid, p, s in zip(rows["sample_id"].to_pylist(), profiles, splits) if s is None
    ]
    if orphans:
        raise SourceFormatError(
            f"{root / SPLITS_FILE}: {len(orphans)} sample(s) belong to a profile that is in no split: "
            f"{listing(orphans)}"
        )
    return pa.array(splits, pa.string())


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
