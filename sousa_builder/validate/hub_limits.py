"""The Hub's limits on a repo (file sizes, entries per folder, files, row group sizes), checked on a folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..layout import IGNORED
from .report import KEPT, CheckResult, verdict


@dataclass(frozen=True)
class HubLimits:
    """What the Hub and its dataset viewer accept."""

    max_file_bytes: int = 20 * 10**9  # files under 20 GB
    max_folder_entries: int = 10_000  # fewer than 10,000 entries (files and folders) per folder
    max_files: int = 100_000  # fewer than 100,000 files per repository
    # The viewer refuses row groups above ~286 MiB of uncompressed data (the footer's total_byte_size).
    max_row_group_bytes: int = 280 * 2**20


def hub_limits_checks(out: Path, limits: HubLimits) -> list[CheckResult]:
    """File sizes, entries per folder, files in all, Parquet row group sizes."""
    big, crowded, files, row_groups = [], [], [], []
    per_folder: dict[str, int] = {}
    for directory, subdirectories, names in os.walk(out):
        here = Path(directory)
        if here == out:
            subdirectories[:] = [d for d in subdirectories if d not in IGNORED]
        subdirectories.sort()
        entries = len(subdirectories) + len(names)
        folder = here.relative_to(out).as_posix()
        per_folder[folder] = len(names)
        if entries >= limits.max_folder_entries:
            crowded.append(f"{folder}/: {entries:,} entries")
        for name in sorted(names):
            path = here / name
            relative = path.relative_to(out).as_posix()
            files.append(relative)
            size = path.lstat().st_size  # a link is reported by `manifest`, not followed
            if size >= limits.max_file_bytes:
                big.append(f"{relative}: {size / 1e9:,.2f} GB")
            if name.endswith(".parquet"):
                try:
                    metadata = pq.read_metadata(path)
                except (OSError, pa.ArrowException):
                    continue  # reported by `features` for shards; not a size problem
                for index in range(metadata.num_row_groups):
                    group_bytes = metadata.row_group(index).total_byte_size
                    if group_bytes >= limits.max_row_group_bytes:
                        row_groups.append(f"{relative} row group {index}: {group_bytes / 2**20:,.1f} MiB")
    fullest = sorted(per_folder.items(), key=lambda item: (-item[1], item[0]))
    too_many = [f"{folder}/: {number:,} files" for folder, number in fullest] if len(files) >= limits.max_files else []
    return [
        verdict(
            "hub_file_size",
            len(big),
            big,
            f"file(s) of {limits.max_file_bytes / 1e9:g} GB or more",
            f"every file under {limits.max_file_bytes / 1e9:g} GB",
        ),
        verdict(
            "hub_folder_entries",
            len(crowded),
            crowded,
            f"folder(s) with {limits.max_folder_entries:,} entries or more",
            f"every folder under {limits.max_folder_entries:,} entries",
        ),
        CheckResult(
            "hub_file_count",
            "fail" if too_many else "pass",
            f"{len(files):,} files, the Hub allows fewer than {limits.max_files:,} (the fullest folders)"
            if too_many
            else f"{len(files):,} files in all, under {limits.max_files:,}",
            len(too_many),
            too_many[:KEPT],
        ),
        verdict(
            "hub_row_groups",
            len(row_groups),
            row_groups,
            f"Parquet row group(s) of {limits.max_row_group_bytes / 2**20:g} MiB or more (the viewer refuses them)",
            f"every Parquet row group under {limits.max_row_group_bytes / 2**20:g} MiB",
        ),
    ]
