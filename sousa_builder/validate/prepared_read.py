"""The checks of a prepared output that read it as a whole: `manifest` (every file's bytes against what prepare
wrote) and `load` (every config through `datasets`). A local folder and a URL get the same checks, read where they
are: at a URL each object's sha256 is streamed from the bucket, and the configs load from there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import datasets

from ..load import load_prepared
from ..manifest import MANIFEST, Manifest, ownership_problems
from ..prepared_files import object_problems
from .prepared_folder import PreparedFolder
from .report import CheckResult, verdict


def manifest_check(
    prepared: PreparedFolder, hashed: bool = True, known: Mapping[str, str] | None = None
) -> CheckResult:
    """Every file is the one prepare wrote (size and sha256 against .sousa/manifest.json), and nothing else is
    there: no file the manifest does not list, no link.

    Locally, hashes are remembered by `stat`, so publish reads no file again; at a URL each object is read as a
    stream. Where a shard's bytes differ, its page checksums say where.

    Args:
        prepared ([`~validate.prepared_folder.PreparedFolder`]):
            The output, as `scan` found it.
        hashed (`bool`):
            At a URL, whether each object's sha256 is read (True), or an object whose ETag is the one the manifest
            recorded when it was put in place is taken as written (for `publish`, whose uploads check the sha256
            of every byte they send).
        known (`Mapping[str, str]`, *optional*):
            The sha256 of the files already read whole (relative path -> sha256, from `embedded_media`): taken
            instead of reading them again.

    Returns:
        [`~validate.report.CheckResult`]: the `manifest` check.
    """
    listing = prepared.listing
    manifest = Manifest.read(Path(prepared.out)) if listing is None else listing.manifest
    if manifest is None:
        problem = f"{MANIFEST}: missing or unreadable; only a folder made by `sousa-builder prepare` is checked"
        return CheckResult("manifest", "fail", "the folder has no manifest of what prepare wrote", 1, [problem])
    local = listing is None
    if local:
        problems = ownership_problems(Path(prepared.out), manifest, known=known)
    else:
        problems = object_problems(listing, hashed, known)
    proof = "size and sha256" if hashed or listing is None else "size, and ETag or sha256"
    return verdict(
        "manifest",
        len(problems),
        problems,
        "file(s) not as prepare wrote them, or not written by it",
        f"{len(manifest.files)} file(s) as prepare wrote them ({proof}), and nothing else",
    )


def load_check(prepared: PreparedFolder, sample: int | None) -> CheckResult:
    """Each README config loads with `datasets.load_dataset(OUT, config)` (streaming: no cache copy); at a URL,
    which `datasets` does not read as a dataset folder, with `load.load_prepared` (what users of a URL call).

    Args:
        prepared ([`~validate.prepared_folder.PreparedFolder`]):
            The output, as `scan` found it.
        sample (`int`, *optional*):
            Read only the first `sample` rows of each split.

    Returns:
        [`~validate.report.CheckResult`]: the `load` check.
    """
    offenders, read = [], 0
    files = prepared.split_rows()
    for name in prepared.configs:
        try:
            with _quiet_datasets():
                if prepared.listing is None:
                    loaded = datasets.load_dataset(str(prepared.out), name, streaming=True)
                else:
                    options = dict(prepared.listing.fs.storage_options)
                    loaded = load_prepared(prepared.out, name, streaming=True, storage_options=options)
                rows = {split: _rows_read(dataset, sample) for split, dataset in loaded.items()}
        except Exception as err:  # any failure to load is what this check reports
            offenders.append(f"config {name}: {type(err).__name__}: {_gist(err)}")
            continue
        for split, count in rows.items():
            read += count
            expected = files.get(name, {}).get(split, 0)
            if count != (expected if sample is None else min(sample, expected)):
                offenders.append(f"{name}/{split}: {count} rows load, the files hold {expected}")
    how = f"the first {sample} rows of each split" if sample is not None else "every row"
    return verdict(
        "load",
        len(offenders),
        offenders,
        "config(s) or split(s) that do not load",
        f"{len(prepared.configs)} config(s) load with datasets {datasets.__version__} ({how} read, {read:,} rows)",
    )


def _rows_read(dataset: datasets.IterableDataset, sample: int | None) -> int:
    """Read a streamed split as Arrow batches (cast to the features, nothing decoded); count its rows."""
    rows = 0
    for batch in dataset.with_format("arrow").iter(batch_size=min(sample or 1000, 1000)):
        rows += batch.num_rows
        if sample is not None and rows >= sample:
            return min(rows, sample)
    return rows


def _gist(error: BaseException, limit: int = 300) -> str:
    """First and last line of an error (datasets' cast errors put the schemas in between)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence datasets' own error log while loading: the failure is reported by the check instead."""
    level = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
