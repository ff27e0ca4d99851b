"""The Hub layout of a prepared folder, in one place: what `prepare` writes and `publish` may replace or delete.

```
README.md                                   the dataset card (its YAML configures loading)
{config}/{split}-NNNNN-of-NNNNN.parquet     the shards of a config (audio, midi_only, labels_only)
auxiliary/{table}.parquet                   the flat stroke and measure tables
.sousa/manifest.json                        what was written (never published)
```

`prepare`, `card`, `publish`, `load` and `validate` take these names from here. Publish deletes on the Hub
only files that `is_ours` recognises: a shard name of a pushed config, an auxiliary table this tool writes, or
a file of an older layout (`LEGACY_PATTERNS`, in a repo that holds its label tables); a user's
`audio/my_eval_subset.parquet` is none of them.

This module imports nothing heavy: the command line reads it before `datasets` is imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

README = "README.md"
# The config folders, default first: the names of `builder.Sousa.BUILDER_CONFIGS` (a test checks the two agree).
CONFIGS = ("audio", "midi_only", "labels_only")
AUXILIARY_DIR = "auxiliary"
# The auxiliary tables, as `labels.LABEL_TABLES` names them (a test checks the two agree).
AUXILIARY_TABLES = ("strokes", "measures")
# Not published: git metadata, huggingface_hub's local download cache, sousa-builder's manifest.
IGNORED = (".git", ".cache", ".sousa")
SHARD_DIGITS = 5
# A split name as datasets accepts it (`\w+(\.\w+)*`), then the index and count of the shard.
SHARD_NAME = re.compile(r"^(?P<split>\w+(?:\.\w+)*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
# What earlier layouts of the dataset wrote: label tables under labels/ (by name), loose media under audio/ and
# midi/ (flat or by rudiment), one Parquet config under data/ (as shards). Deleted only from a repo that holds
# one of those label tables: loose media alone may be anybody's.
LEGACY_LABELS = tuple(f"labels/{table}.parquet" for table in ("samples", "exercises", "strokes", "measures"))
LEGACY_PATTERNS = (
    "audio/*.flac", "audio/*/*.flac", "midi/*.mid", "midi/*/*.mid",
    "data/*-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].parquet",
    *LEGACY_LABELS,
)  # fmt: skip


def shard_name(split: str, index: int, count: int) -> str:
    """The file name of one shard of a split.

    Args:
        split (`str`):
            The split, e.g. `"train"`.
        index (`int`):
            The shard's position, from 0.
        count (`int`):
            How many shards the split has.

    Returns:
        `str`: `{split}-NNNNN-of-NNNNN.parquet`, e.g. `train-00000-of-00002.parquet`.
    """
    return f"{split}-{index:0{SHARD_DIGITS}d}-of-{count:0{SHARD_DIGITS}d}.parquet"


def shard_glob(split: str) -> str:
    """A glob matching the shards of `split` in a config folder (and no other file this tool writes).

    Args:
        split (`str`):
            The split, e.g. `"train"`.

    Returns:
        `str`: a pattern for `Path.glob` or fsspec's `glob`, e.g. `train-*-of-*.parquet`.
    """
    return f"{split}-*-of-*.parquet"


def shard_split(name: str) -> str | None:
    """The split of a shard file name, or None when `name` is not a shard name of this layout.

    Args:
        name (`str`):
            A file name (not a path), e.g. `"train-00000-of-00002.parquet"`.

    Returns:
        `str` or `None`: the split (`"train"`), or None for any other name (`"my_eval_subset.parquet"`).
    """
    match = SHARD_NAME.match(name)
    return match["split"] if match else None


def data_files_pattern(config: str, split: str) -> str:
    """Where a split's shards live, as the card's `configs` list gives it to `datasets.load_dataset`.

    Args:
        config (`str`):
            The config name, e.g. `"audio"`.
        split (`str`):
            The split name, e.g. `"train"`.

    Returns:
        `str`: the pattern `{config}/{split}-*`.
    """
    return f"{config}/{split}-*"


def auxiliary_path(table: str) -> str:
    """The path of an auxiliary table in the prepared folder and in the repo.

    Args:
        table (`str`):
            One of `AUXILIARY_TABLES`.

    Returns:
        `str`: `auxiliary/{table}.parquet`.
    """
    return f"{AUXILIARY_DIR}/{table}.parquet"


def is_ours(path: str, configs: set[str] | frozenset[str], older_layout: bool = False) -> bool:
    """Whether a file in the repo is one that this tool writes and a publish of `configs` may delete.

    Args:
        path (`str`):
            A path in the repo, POSIX, e.g. `"audio/train-00000-of-00002.parquet"`.
        configs (`set[str]`):
            The configs being pushed: only their shards are replaced (another config's stay).
        older_layout (`bool`, *optional*):
            Whether the repo holds an older layout of the dataset (`holds_older_layout`): only then are its
            files (`LEGACY_PATTERNS`) ours.

    Returns:
        `bool`: True for a shard of a pushed config (`{config}/{split}-NNNNN-of-NNNNN.parquet`, directly in the
        config folder), an auxiliary table of `AUXILIARY_TABLES`, or, with `older_layout`, a file of the older
        layout; False for anything else (`audio/my_eval_subset.parquet`, `data/2023/backup.parquet`, and
        `audio/my_demo.flac` in a repo without the older layout's label tables).
    """
    folder, _, name = path.rpartition("/")
    if folder in configs and shard_split(name) is not None:
        return True
    if path in {auxiliary_path(table) for table in AUXILIARY_TABLES}:
        return True
    return older_layout and any(
        fnmatchcase(path, pattern) and path.count("/") == pattern.count("/") for pattern in LEGACY_PATTERNS
    )


def holds_older_layout(paths: Iterable[str]) -> bool:
    """Whether a repo's files include a label table of the older layout (`LEGACY_LABELS`).

    Args:
        paths (`Iterable[str]`):
            Every path in the repo, POSIX.

    Returns:
        `bool`: True when one of them is `labels/{samples,exercises,strokes,measures}.parquet`.
    """
    return not set(LEGACY_LABELS).isdisjoint(paths)
