"""The label buckets hold every stroke and measure row of their samples, sorted, however the source orders them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import sousa_builder.labels
from sousa_builder.labels import LABEL_TABLES, LabelBuckets
from sousa_builder.source import SousaSource
from sousa_builder.source_files import LABEL_FILES, read_label_table


def _expected(root: Path, name: str) -> pa.Table:
    """Every row of table `name`, sorted by (sample_id, index): what the buckets hold, one after the other."""
    table = read_label_table(root / LABEL_FILES[name], LABEL_TABLES[name])
    return table.sort_by([("sample_id", "ascending"), ("index", "ascending")])


def _assert_buckets(labels: LabelBuckets, root: Path) -> None:
    for name in LABEL_TABLES:
        rows = pa.concat_tables(labels.rows(name, bucket) for bucket in range(labels.num_buckets))
        assert rows.equals(_expected(root, name))
        for path in Path(labels.folder).glob(f"{name}-*.arrow"):  # sorted as written, in one record batch
            with pa.OSFile(str(path)) as source:
                reader = pa.ipc.open_file(source)
                assert reader.num_record_batches == 1
                batch = reader.get_batch(0)
            codes = batch.column(0).indices.to_numpy().astype(np.int64)
            keys = codes * 10**6 + batch.column(1).to_numpy()
            assert (np.diff(keys) > 0).all()


def _shuffled(source: Path, into: Path) -> Path:
    """A copy of `source` whose stroke and measure rows come in a random order."""
    shutil.copytree(source, into)
    rng = np.random.default_rng(7)
    for name in LABEL_TABLES:
        path = into / LABEL_FILES[name]
        table = pq.read_table(path)
        pq.write_table(table.take(rng.permutation(table.num_rows)), path, row_group_size=500)
    return into


@pytest.mark.parametrize("order", ["as made", "shuffled"])
@pytest.mark.parametrize("counts", ["right", "none", "too few"])
@pytest.mark.parametrize("held_rows", [1 << 20, 100])
def test_buckets_sorted_however_rows_come(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str, counts: str, held_rows: int
) -> None:
    # Batches of 64 rows: a bucket's rows span several; 100 held rows: buckets are written as their rows come and
    # sorted at the end; too few rows expected: a bucket written complete gets more rows afterwards.
    monkeypatch.setattr(sousa_builder.labels, "ROWS_PER_READ", 64)
    monkeypatch.setattr(sousa_builder.labels, "HELD_ROWS", held_rows)
    root = _shuffled(sample_dir, tmp_path / "data") if order == "shuffled" else sample_dir
    source = SousaSource.open(root)
    row_counts = {"right": source.label_row_counts(), "none": None}.get(counts)
    if counts == "too few":
        row_counts = {name: pc.divide(column, 2) for name, column in source.label_row_counts().items()}
    ids = source.rows["sample_id"].combine_chunks()
    labels = LabelBuckets.write(root, ids, tmp_path / "buckets", samples_per_bucket=3, row_counts=row_counts)
    assert labels.num_buckets == -(-len(ids) // 3)
    _assert_buckets(labels, root)
