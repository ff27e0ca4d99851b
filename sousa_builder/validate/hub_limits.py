"""The Hub's limits on a repo (file sizes, entries per folder, files, row group sizes), checked on a folder."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..layout import IGNORED
from ..prepared_files import RemoteListing, parquet_file
from .report import KEPT, CheckResult, verdict


@dataclass(frozen=True)
class HubLimits:
    """What the Hub and its dataset viewer accept."""

    max_file_bytes: int = 20 * 10**9  # files under 20 GB
    max_folder_entries: int = 10_000  # fewer than 10,000 entries (files and folders) per folder
    max_files: int = 100_000  # fewer than 100,000 files per repository
    # The viewer refuses row groups above ~286 MiB of uncompressed data (the footer's total_byte_size).
    max_row_group_bytes: int = 280 * 2**20


def hub_limits_checks(out: Path | str, limits: HubLimits, listing: RemoteListing | None = None) -> list[CheckResult]:
    """File sizes, entries per folder, files in all, Parquet row group sizes.

    Args:
        out (`Path` or `str`):
            The prepared output: a local folder, or a URL (then `listing` gives its objects).
        limits ([`HubLimits`]):
            The limits.
        listing ([`~prepared_files.RemoteListing`], *optional*):
            The objects of a URL `out`; its footers are read where they are.

    Returns:
        `list[CheckResult]`: hub_file_size, hub_folder_entries, hub_file_count, hub_row_groups.
    """
    big, crowded, row_groups = [], [], []
    sizes, entries = _local_entries(Path(out)) if listing is None else _object_entries(listing)
    files = sorted(sizes)
    per_folder = dict.fromkeys(entries, 0)  # files per folder
    for relative in files:
        folder = posixpath.dirname(relative) or "."
        per_folder[folder] = per_folder.get(folder, 0) + 1
    for folder, number in sorted(entries.items()):
        if number >= limits.max_folder_entries:
            crowded.append(f"{folder}/: {number:,} entries")
    for relative in files:
        if sizes[relative] >= limits.max_file_bytes:
            big.append(f"{relative}: {sizes[relative] / 1e9:,.2f} GB")
        if relative.endswith(".parquet"):
            try:
                metadata = parquet_file(out, relative).metadata
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


def _local_entries(out: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(file -> size, folder -> entries) of a local folder, links not followed (`manifest` reports them)."""
    sizes, entries = {}, {}
    for directory, subdirectories, names in os.walk(out):
        here = Path(directory)
        if here == out:
            subdirectories[:] = [d for d in subdirectories if d not in IGNORED]
        entries[here.relative_to(out).as_posix()] = len(subdirectories) + len(names)
        for name in names:
            sizes[(here / name).relative_to(out).as_posix()] = (here / name).lstat().st_size
    return sizes, entries


def _object_entries(listing: RemoteListing) -> tuple[dict[str, int], dict[str, int]]:
    """(file -> size, folder -> entries) of the objects at a URL; a folder is what its keys' prefixes make it."""
    sizes = {relative: int(info.get("size") or 0) for relative, info in listing.objects.items()}
    children: dict[str, set[str]] = {}
    for relative in sizes:
        parts = relative.split("/")
        for depth in range(len(parts)):
            children.setdefault("/".join(parts[:depth]) or ".", set()).add(parts[depth])
    return sizes, {folder: len(names) for folder, names in children.items()}
