"""A prepared output as found, a local folder or a URL: its shards (footers, ids) and its README YAML, read once
where they are (`prepared_files`: at a URL, the footers and columns asked for are fetched, not the files)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..card import card_metadata
from ..errors import CardMetadataError, NotARegularFileError
from ..layout import AUXILIARY_DIR, IGNORED, README, shard_split
from ..prepared_files import RemoteListing, glob_files, parquet_file
from ..storage import reaching
from .report import first_line


@dataclass
class Shard:
    """One Parquet file of a config, its split (from its name) and its footer."""

    path: str  # relative to the prepared folder, POSIX
    config: str
    split: str
    metadata: pq.FileMetaData | None = None
    schema: pa.Schema | None = None
    problem: str | None = None
    ids: pa.Table | None = None  # sample_id and profile_id, when readable

    @property
    def rows(self) -> int:
        """The shard's rows, from its footer (0 when the footer did not read)."""
        return self.metadata.num_rows if self.metadata is not None else 0


@dataclass
class PreparedFolder:
    """What was found in the prepared output (`out` a local folder, or a URL with its `listing`)."""

    out: Path | str
    shards: list[Shard]
    readme: dict[str, Any] | None  # the README YAML
    readme_problem: str | None
    configs: dict[str, dict[str, list[str]]]  # README: config -> split -> data_files patterns
    listing: RemoteListing | None = None  # the objects of a URL `out`

    def glob(self, pattern: str) -> list[str]:
        """The files matching `pattern` (a README data_files pattern), as POSIX paths relative to `out`."""
        return glob_files(self.out, pattern)

    def parquet(self, relative: str, **options: Any) -> pq.ParquetFile:
        """The Parquet file `relative`, read where it is (`prepared_files.parquet_file`)."""
        return parquet_file(self.out, relative, **options)

    def shards_of(self, config: str, split: str | None = None) -> list[Shard]:
        """The shards of one config, of one split or of all.

        Args:
            config (`str`):
                The config's name.
            split (`str`, *optional*):
                The split's name; None for every split.

        Returns:
            `list[Shard]`: the shards, in the folder's order.
        """
        return [s for s in self.shards if s.config == config and (split is None or s.split == split)]

    @property
    def readable(self) -> list[Shard]:
        """The shards whose footer read (no `problem`)."""
        return [s for s in self.shards if s.problem is None]

    def split_rows(self) -> dict[str, dict[str, int]]:
        """config -> split -> rows, from the Parquet footers."""
        rows: dict[str, dict[str, int]] = {}
        for shard in self.readable:
            rows.setdefault(shard.config, {}).setdefault(shard.split, 0)
            rows[shard.config][shard.split] += shard.rows
        return rows


def refuse_special_files(out: Path) -> None:
    """Refuse a prepared folder holding anything but regular files and folders, before any file is opened.

    Opening a FIFO named like a shard blocks until something writes to it; a device or socket is no shard either.

    Args:
        out (`Path`):
            The prepared folder.

    Raises:
        [`~errors.NotARegularFileError`]:
            Names the first such path found, and what it is.
    """
    for folder, subfolders, files in os.walk(out):
        subfolders.sort()
        for name in sorted(files):
            path = Path(folder, name)
            try:
                mode = path.stat().st_mode  # follows a link: what opening it would reach (links: the manifest check)
            except OSError:
                continue  # a dangling link: the manifest check reports it
            if not stat.S_ISREG(mode):
                raise NotARegularFileError(
                    f"{path}: not a regular file ({file_kind(mode)}); a prepared folder holds only the files prepare "
                    "wrote: remove it, or prepare again"
                )


def file_kind(mode: int) -> str:
    """What a `st_mode` is, in words ("a FIFO", "a socket", ...).

    Args:
        mode (`int`):
            The `st_mode` of `os.stat`.

    Returns:
        `str`: e.g. "a FIFO (named pipe)".
    """
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"),
    )  # fmt: skip
    return next((text for test, text in kinds if test(mode)), "not a file")


def scan(out: Path | str, listing: RemoteListing | None = None) -> PreparedFolder:
    """Find the config folders and their shards, read their footers, and parse the README YAML.

    Args:
        out (`Path` or `str`):
            The prepared output: a local folder, or a URL.
        listing ([`~prepared_files.RemoteListing`], *optional*):
            The objects of a URL `out` (`prepared_files.list_prepared`); None for a local folder.

    Returns:
        [`PreparedFolder`]: what was found.

    Raises:
        [`~errors.NotARegularFileError`]:
            A local folder holds a FIFO, socket or device (refused before any file is opened).
    """
    if listing is None:
        refuse_special_files(Path(out))
    shards = []
    for relative in _shard_paths(out, listing):
        config, name = relative.split("/", 1)[0], relative.rsplit("/", 1)[-1]
        split = shard_split(name) or name.removesuffix(".parquet").split("-")[0]
        shard = Shard(relative, config, split)
        try:
            # Page checksums (prepare writes them) and a full validation: damaged bytes are a problem of the
            # shard, not strings that do not decode further on.
            parquet = parquet_file(out, relative, page_checksum_verification=True)
            shard.metadata, shard.schema = parquet.metadata, parquet.schema_arrow
            columns = [c for c in ("sample_id", "profile_id") if c in shard.schema.names]
            shard.ids = parquet.read(columns=columns) if columns else None
            if shard.ids is not None:
                shard.ids.validate(full=True)
        except (OSError, pa.ArrowException) as err:
            shard.problem = f"does not read as Parquet ({first_line(err)})"
        shards.append(shard)
    readme, problem = _read_readme(out, listing)
    configs = _readme_configs(readme) if readme is not None else {}
    return PreparedFolder(out, shards, readme, problem, configs, listing)


def _config_folder(name: str) -> bool:
    return name not in (AUXILIARY_DIR, *IGNORED) and not name.startswith(".")


def _shard_paths(out: Path | str, listing: RemoteListing | None) -> list[str]:
    """The Parquet files under the config folders (every top folder but the auxiliary one and hidden ones), in
    folder order."""
    if listing is not None:
        found = [r for r in listing.objects if "/" in r and _config_folder(r.split("/", 1)[0])]
        return sorted((r for r in found if r.endswith(".parquet")), key=lambda r: (r.split("/", 1)[0], r))
    out = Path(out)
    folders = sorted(p for p in out.iterdir() if p.is_dir() and _config_folder(p.name))
    return [path.relative_to(out).as_posix() for folder in folders for path in sorted(folder.rglob("*.parquet"))]


def _read_readme(out: Path | str, listing: RemoteListing | None) -> tuple[dict[str, Any] | None, str | None]:
    if listing is None and not (Path(out) / README).is_file() or listing is not None and README not in listing.objects:
        return None, f"{README}: missing"
    try:
        if listing is None:
            text = (Path(out) / README).read_text(encoding="utf-8")
        else:
            with reaching(listing.url):
                text = listing.fs.cat_file(listing.path(README)).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{README}: unreadable ({err})"
    try:
        return card_metadata(text), None
    except CardMetadataError as err:
        return None, f"{README}: {err}"


def _readme_configs(readme: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """config name -> split -> data_files patterns, as the README YAML `configs` gives them."""
    configs: dict[str, dict[str, list[str]]] = {}
    entries = readme.get("configs")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("config_name"), str):
            continue
        files = entry.get("data_files", [])
        splits: dict[str, list[str]] = {}
        if isinstance(files, (str, dict)):
            files = [files]
        for item in files if isinstance(files, list) else []:
            if isinstance(item, str):
                splits.setdefault("train", []).append(item)
            elif isinstance(item, dict) and "path" in item:
                paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
                splits.setdefault(str(item.get("split", "train")), []).extend(str(p) for p in paths)
        configs[entry["config_name"]] = splits
    return configs


def readme_split_rows(readme: Mapping[str, Any] | None) -> dict[str, dict[str, int]]:
    """config -> split -> num_examples, as the README YAML `dataset_info` gives them."""
    infos = (readme or {}).get("dataset_info", [])
    rows: dict[str, dict[str, int]] = {}
    for info in infos if isinstance(infos, list) else [infos]:
        splits = info.get("splits") if isinstance(info, dict) else None
        for split in splits if isinstance(splits, list) else []:
            if isinstance(split, dict) and isinstance(split.get("num_examples"), int):
                config = rows.setdefault(str(info.get("config_name", "default")), {})
                config[str(split.get("name"))] = split["num_examples"]
    return rows
