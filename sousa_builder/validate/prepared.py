"""Validate a prepared (Hub-layout) folder, as `sousa-builder prepare` writes it, before it is published.

Checks: the README YAML lists what is on disk; every config loads with `datasets.load_dataset`;
features are the declared ones; no internal path columns; rows per split agree across configs, with
the README and (given `source`) with the SOUSA source; the label rows keep the source's row rules
(`rows_*`, `validate.prepared_rows`) and (given `source`) equal its labels (`source_labels`,
`validate.prepared_compare`); every embedded audio and MIDI value passes the media rules (`embedded_media`, read
in the pass that hashes the shards) and (given `source`) equals the source file; splits are disjoint by
profile; the folder stays within the Hub's limits. With `audio`, the embedded audio sounds like a drum
and follows its MIDI (`validate.audio`).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import PreparedFolderError, SousaError
from ..prepared_files import list_prepared, parquet_file
from ..source import SousaSource
from ..source_files import MEDIA_PATH_COLUMNS
from ..storage import is_url, location, reaching
from ..store import in_progress
from .audio import AudioSettings, embedded_audio_checks, skipped_audio_checks
from .embedded_media import embedded_media
from .hub_limits import HubLimits, hub_limits_checks
from .media import run_tasks, sampled_rows
from .prepared_compare import configs_agree, source_labels
from .prepared_folder import PreparedFolder, Shard, readme_split_rows, scan
from .prepared_read import load_check, manifest_check
from .prepared_rows import label_config, read_rows, row_rule_checks
from .prepared_schema import features_check, readme_check
from .report import KEPT, CheckResult, Report, first_line, skipped, verdict

logger = logging.getLogger(__name__)

# Columns that exist only inside the builder and must not reach the output.
INTERNAL_COLUMNS = (*MEDIA_PATH_COLUMNS, "split")


def validate_prepared(
    out: str | os.PathLike,
    source: str | os.PathLike | None = None,
    num_proc: int | None = None,
    sample: int | None = None,
    seed: int | None = None,
    limits: HubLimits | None = None,
    audio: AudioSettings | None = None,
    hashed: bool = True,
) -> Report:
    """Run every prepared-folder check on `out` and report each one.

    The label rows of one config (`labels_only` if there) are checked by the source's row rules
    (`rows_*`); with `source`, the rows of every config must equal the source's labels, value for value
    (`source_labels`), and the embedded media the source files (`media_bytes`).

    Args:
        out: the prepared folder, or a URL (`prepare --out s3://...`): listed first (every path checked to stay
            inside it, objects its manifest does not list reported by the manifest check), then read where it is,
            without a local copy (footers, columns and page indexes fetched as the checks ask for them; every
            object's sha256 streamed).
        source: the SOUSA directory it was prepared from.
        num_proc: processes for the media comparison and the audio checks.
        sample: compare the media of (and run the audio checks on) only this many random samples, drawn
            with `seed`; the load check reads only the first `sample` rows of each split.
        seed: the seed of the `sample` draw (random if not given, and reported in the details).
        limits: the Hub's limits (its defaults if not given).
        audio: with its thresholds, the audio checks run on the audio and MIDI bytes embedded in the
            `audio` config (what would be published; `source` is not needed).
        hashed: at a URL, read every object's sha256 (True), or take an object whose ETag is the one its manifest
            recorded as written (`publish`, whose uploads check the sha256 of what they send).

    Returns:
        The `Report`, one `CheckResult` per check.

    Raises:
        FileNotFoundError: `out` is not a directory.
        PreparedFolderError: `out` is in the middle of a replacement that a prepare did not finish; or a URL
            with nothing there, or a path there (an object key, a manifest entry) that is not a plain path inside it.
        StorageConnectionError: the storage of a URL `out` could not be reached.
    """
    stopped = in_progress(location(out))
    if stopped is not None:  # files of two outputs: no check would say anything true of it
        raise PreparedFolderError(stopped)
    started = time.perf_counter()
    if is_url(out):  # every path checked before anything is read
        listing = list_prepared(str(out))
        with reaching(out):
            prepared = scan(listing.url, listing)
    else:
        folder = Path(out).expanduser().absolute()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such directory")
        prepared = scan(folder)
    limits = limits or HubLimits()
    if sample is not None and seed is None:  # one draw for media_bytes and the audio checks
        seed = random.randrange(2**32)
    opened, source_problem = _open_source(source)
    unlisted = skipped("load", "the README lists no configs (see readme)")
    embedded = embedded_media(prepared, num_proc)  # reads the media shards once, and hashes them for the manifest
    checks = [
        manifest_check(prepared, hashed, embedded.sha256),
        readme_check(prepared),
        load_check(prepared, sample) if prepared.configs else unlisted,
        features_check(prepared),
        _no_path_columns(prepared),
        _row_counts(prepared, opened, source_problem),
    ]
    rows = read_rows(prepared)  # the label columns of each config, without the media
    checks += row_rule_checks(rows.get(label_config(prepared) or ""))
    checks.append(source_labels(rows, opened, source_problem, source is not None))
    checks.append(configs_agree(rows, label_config(prepared), source is not None))
    checks.append(embedded.check)
    if source is None:
        checks.append(skipped("media_bytes", "needs --source, the SOUSA directory the folder was prepared from"))
    elif opened is None:
        checks.append(CheckResult("media_bytes", "fail", f"cannot read the source: {source_problem}", 1))
    else:
        checks.append(_media_bytes(prepared, opened, num_proc, sample, seed))
    checks += [_split_profiles(prepared), *hub_limits_checks(prepared.out, limits, prepared.listing)]
    if audio is not None:
        checks += _audio(prepared, num_proc, sample, seed, audio)
    return Report(str(prepared.out), "prepared", checks, time.perf_counter() - started)


def _open_source(source: str | os.PathLike | None) -> tuple[SousaSource | None, str | None]:
    if source is None:
        return None, None
    try:
        return SousaSource.open(source), None
    except SousaError as err:
        return None, str(err)


# --- checks -------------------------------------------------------------------------------------


def _audio_paths(prepared: PreparedFolder, relative: str) -> pa.Table:
    """sample_id and the `path` field of the audio struct (read alone, without the bytes)."""
    # ParquetFile.read reads the one leaf; pq.read_table would read the whole struct, FLAC bytes included.
    table = prepared.parquet(relative).read(columns=["sample_id", "audio.path"])
    column = table.column(1)
    if pa.types.is_struct(column.type):
        column = pc.struct_field(column, "path")
    return pa.table({"sample_id": table["sample_id"], "path": column})


def _no_path_columns(prepared: PreparedFolder) -> CheckResult:
    """No internal path column in any shard, and audio `path` values are bare file names."""
    offenders, count = [], 0
    for shard in prepared.readable:
        internal = [c for c in INTERNAL_COLUMNS if c in shard.schema.names]
        count += len(internal)
        offenders += [f"{shard.path}: internal column {c}" for c in internal]
        if "audio" not in shard.schema.names or not pa.types.is_struct(shard.schema.field("audio").type):
            continue
        try:
            table = _audio_paths(prepared, shard.path)
        except (OSError, pa.ArrowException, KeyError) as err:
            offenders.append(f"{shard.path}: audio paths unreadable ({first_line(err)})")
            count += 1
            continue
        leaky = pc.or_(pc.match_substring_regex(table["path"], r"[/\\]"), pc.starts_with(table["path"], "~"))
        leaky = table.filter(pc.fill_null(leaky, False))
        count += leaky.num_rows
        offenders += [
            f"{shard.path}: sample {sid} audio.path {path!r} is a path, not a file name"
            for sid, path in zip(leaky["sample_id"].to_pylist()[:KEPT], leaky["path"].to_pylist()[:KEPT])
        ]
    return verdict(
        "no_path_columns",
        count,
        offenders,
        "internal path column(s) or audio path value(s)",
        f"no {', '.join(INTERNAL_COLUMNS)} column; audio paths are bare file names",
    )


def _ids(shards: Sequence[Shard]) -> list[str]:
    return [
        sid
        for s in shards
        if s.ids is not None and "sample_id" in s.ids.column_names
        for sid in s.ids["sample_id"].to_pylist()
    ]


def _row_counts(prepared: PreparedFolder, source: SousaSource | None, source_problem: str | None) -> CheckResult:
    """Rows (and sample ids) per split: equal across configs, to the README and to the source."""
    offenders: list[str] = []
    count = 0
    rows = prepared.split_rows()
    if source_problem:
        offenders.append(f"cannot read the source: {source_problem}")
        count += 1
    reference_name = "source" if source is not None else None
    reference: dict[str, list[str]] = {}
    if source is not None:
        for split in source.split_names:
            reference[split] = source.split_rows(split)["sample_id"].to_pylist()
    elif rows:
        reference_name = next(iter(rows))
        reference = {s: _ids(prepared.shards_of(reference_name, s)) for s in rows[reference_name]}
    for name in sorted(rows):
        splits = set(rows[name]) | set(reference)
        for split in sorted(splits):
            ids = _ids(prepared.shards_of(name, split))
            if reference_name is not None and name != reference_name:
                expected = reference.get(split, [])
                if len(ids) != len(expected):
                    offenders.append(f"{name}/{split}: {len(ids)} rows, {reference_name} {len(expected)}")
                    count += 1
                missing = sorted(set(expected) - set(ids))
                extra = sorted(set(ids) - set(expected))
                count += len(missing) + len(extra)
                offenders += [f"{name}/{split}: sample {sid} missing (in {reference_name})" for sid in missing[:KEPT]]
                offenders += [f"{name}/{split}: sample {sid} not in {reference_name}" for sid in extra[:KEPT]]
            repeated = len(ids) - len(set(ids))
            if repeated:
                count += repeated
                offenders.append(f"{name}/{split}: {repeated} sample id(s) more than once")
    declared = readme_split_rows(prepared.readme)
    for name, splits in sorted(declared.items()):
        for split, number in sorted(splits.items()):
            actual = rows.get(name, {}).get(split, 0)
            if number != actual:
                count += 1
                offenders.append(f"{name}/{split}: the README says {number} rows, the files hold {actual}")
    totals = {name: sum(splits.values()) for name, splits in rows.items()}
    against = "the source and the README" if source is not None else "each other and the README"
    return verdict(
        "row_counts",
        count,
        offenders,
        "row count or sample id mismatch(es)",
        f"rows per split agree with {against} ({', '.join(f'{n} {t:,}' for n, t in totals.items())})",
        details={"rows": rows},
    )


def _media_bytes(
    prepared: PreparedFolder, source: SousaSource, num_proc: int | None, sample: int | None, seed: int | None
) -> CheckResult:
    """Embedded audio and MIDI bytes are the source files, byte for byte."""
    media = (source.rows[column].to_pylist() for column in ("sample_id", "audio_path", "midi_path"))
    expected_all = {sample_id: (audio, midi) for sample_id, audio, midi in zip(*media)}
    ids = sorted(expected_all)
    rows, details = sampled_rows(len(ids), sample, seed)
    shards = [s for s in prepared.readable if {"audio", "midi"} & set(s.schema.names) and s.ids is not None]
    tasks, weights = [], []
    for shard, group, wanted in _row_groups_holding(shards, {ids[row] for row in rows}):
        tasks.append((str(prepared.out), shard.path, group, str(source.root), {s: expected_all[s] for s in wanted}))
        weights.append(len(wanted))
    found = run_tasks(compare_embedded, tasks, weights, num_proc, "Comparing media", unit="row")
    return verdict(
        "media_bytes",
        len(found),
        found,
        "embedded media that differ from the source files",
        f"{sum(weights):,} embedded row(s) hold the source's audio / MIDI bytes exactly",
        details={**details, "compared_rows": sum(weights)},
    )


def compare_embedded(
    out: str, shard: str, row_group: int, root: str, expected: dict[str, tuple[str | None, str | None]]
) -> list[str]:
    """Worker: the `audio` / `midi` bytes of one row group of a prepared shard against the source files.

    `expected` maps the sample ids to compare to their (audio_path, midi_path) in the source root. Whether the
    embedded bytes pass the media rules on their own (bytes equal to a broken source file are no better) is the
    `embedded_media` check's, which reads every embedded value.

    Args:
        out: the prepared output, a folder or a URL.
        shard: the shard's POSIX path in it.
        row_group: the row group to read.
        root: the source's root folder.
        expected: sample id -> (audio_path, midi_path) of the samples to compare.

    Returns:
        One 'shard: sample ID column ...' line per difference (or a line saying the row group does not read).
    """
    try:
        parquet = parquet_file(out, shard)
        columns = [name for name in ("sample_id", "audio", "midi") if name in parquet.schema_arrow.names]
        table = parquet.read_row_group(row_group, columns=columns)
    except (pa.ArrowException, OSError) as err:  # a corrupt page: the footer and sample_id may still read
        return [f"{shard}: row group {row_group} does not read ({first_line(err)})"]
    found = []
    for row in table.to_pylist():
        sample_id = row["sample_id"]
        if sample_id not in expected:
            continue
        audio_path, midi_path = expected[sample_id]
        embedded = {"audio": (row.get("audio") or {}).get("bytes"), "midi": row.get("midi")}
        for column, relative in (("audio", audio_path), ("midi", midi_path)):
            if column not in columns:
                continue
            if relative is None:
                found.append(f"{shard}: sample {sample_id} has {column} bytes but the source has no {column} file")
                continue
            try:
                original = (Path(root) / relative).read_bytes()
            except OSError as err:
                found.append(f"{shard}: sample {sample_id}: cannot read source {relative} ({err.strerror})")
                continue
            if embedded[column] != original:
                size = "missing" if embedded[column] is None else f"{len(embedded[column]):,} bytes"
                found.append(
                    f"{shard}: sample {sample_id} {column} ({size}) differs from {relative} ({len(original):,} bytes)"
                )
    return found


def _audio(
    prepared: PreparedFolder, num_proc: int | None, sample: int | None, seed: int | None, settings: AudioSettings
) -> list[CheckResult]:
    """The audio checks on the rows of the `audio` config (all, or `sample` random ones drawn with `seed`)."""
    shards = [s for s in prepared.readable if s.config == "audio" and {"audio", "midi"} <= set(s.schema.names)]
    shards = [s for s in shards if s.ids is not None and "sample_id" in s.ids.column_names]
    if not shards:
        return skipped_audio_checks("no readable audio config shard with audio and midi columns")
    ids = sorted(sid for shard in shards for sid in shard.ids["sample_id"].to_pylist())
    rows, details = sampled_rows(len(ids), sample, seed)
    row_groups = [
        (shard.path, group, wanted) for shard, group, wanted in _row_groups_holding(shards, {ids[r] for r in rows})
    ]
    return embedded_audio_checks(prepared.out, row_groups, details, num_proc, settings)


def _row_groups_holding(shards: Sequence[Shard], chosen: set[str]) -> Iterator[tuple[Shard, int, list[str]]]:
    """(shard, row group, the `chosen` sample ids in it) for every row group of `shards` holding any of them."""
    for shard in shards:
        ids, offset = shard.ids["sample_id"].to_pylist(), 0
        for group in range(shard.metadata.num_row_groups):
            size = shard.metadata.row_group(group).num_rows
            wanted = [sid for sid in ids[offset : offset + size] if sid in chosen]
            offset += size
            if wanted:
                yield shard, group, wanted


def _split_profiles(prepared: PreparedFolder) -> CheckResult:
    """No profile_id appears in two splits, across every shard of every config."""
    seen: dict[str, dict[str, str]] = {}  # profile -> split -> first shard
    for shard in prepared.readable:
        if shard.ids is None or "profile_id" not in shard.ids.column_names:
            continue
        for profile in pc.unique(shard.ids["profile_id"]).to_pylist():
            seen.setdefault(profile, {}).setdefault(shard.split, shard.path)
    shared = {profile: splits for profile, splits in seen.items() if len(splits) > 1}
    offenders = [
        f"profile {profile} in {' and '.join(f'{s} ({p})' for s, p in sorted(splits.items()))}"
        for profile, splits in sorted(shared.items(), key=lambda item: str(item[0]))
    ]
    return verdict(
        "split_profiles",
        len(offenders),
        offenders,
        "profile(s) in more than one split",
        f"{len(seen):,} profiles, each in one split only",
    )
