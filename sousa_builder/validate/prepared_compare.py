"""Whether the label rows of a prepared folder equal its source's labels, value for value.

Every label column of every row is compared, and every field of every nested stroke and measure:
the rows `prepare` would write from the source (`SousaSource.rows`, and the stroke and measure files
converted as the builder converts them, ordered by index) against the rows in the shards. Columns
are compared whole, one at a time (pyarrow compute, no Python loop over rows).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..features import FLAT_COLUMNS, MEASURE_FIELDS, STROKE_FIELDS
from ..source import SousaSource
from ..source_files import LABEL_FILES, LABEL_SCHEMAS, convert_column
from .label_files import ints, key_positions
from .prepared_rows import PreparedRows
from .report import KEPT, CheckResult, skipped, verdict

logger = logging.getLogger(__name__)

FIELDS = {"strokes": [name for name, _, _ in STROKE_FIELDS], "measures": [name for name, _, _ in MEASURE_FIELDS]}


class SourceLabels:
    """A source's labels as `prepare` writes them: the flat columns of `SousaSource.rows`, and the
    stroke and measure files, read a column at a time and converted to their declared types."""

    def __init__(self, source: SousaSource):
        self.source = source
        self.ids = source.rows["sample_id"].combine_chunks()
        self._items: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def flat(self, column: str) -> pa.ChunkedArray:
        """A flat label column of every sample, in `ids` order."""
        return self.source.rows[column]

    def column(self, name: str, field_name: str) -> pa.ChunkedArray:
        """One field of the `name` file (strokes, measures), every row, at its declared type."""
        table = pq.read_table(self.source.root / LABEL_FILES[name], columns=[field_name])
        return convert_column(table[field_name], LABEL_SCHEMAS[name].field(field_name).type)

    def items(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, start, count) of the `name` rows: `order` lists the file's rows of known samples sorted
        by (sample, index), where sample row s has `count[s]` of them from `start[s]` on."""
        if name not in self._items:
            path = self.source.root / LABEL_FILES[name]
            table = pq.read_table(path, columns=["sample_id", "index"], read_dictionary=["sample_id"])
            owner = key_positions(table["sample_id"], self.ids).pos.astype(np.int64)  # scaled in `_sorting`
            index = ints(convert_column(table["index"], pa.int64()))
            known = np.flatnonzero(owner >= 0)
            order = known[_sorting(owner[known], index[known])]
            count = np.bincount(owner[known], minlength=len(self.ids))
            self._items[name] = (order, np.cumsum(count) - count, count)
        return self._items[name]


class ConfigLabels:
    """The label rows of one prepared config, served as `SourceLabels` serves a source's: the reference that the
    other configs of the folder are compared with when no source is given."""

    def __init__(self, rows: PreparedRows):
        self.rows = rows
        self.ids = rows.flat["sample_id"].combine_chunks()

    def flat(self, column: str) -> pa.ChunkedArray:
        """A flat label column of every row, in `ids` order."""
        return self.rows.flat[column]

    def column(self, name: str, field_name: str) -> pa.ChunkedArray:
        """One field of nested column `name`, every item, in row order (empty where it does not read)."""
        values = self.rows.nested(name, field_name)
        return values if values is not None else pa.chunked_array([], pa.null())

    def items(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, start, count) of the `name` items, as `SourceLabels.items`: already in row order."""
        parents = self.rows.parents(name)
        parents = parents if parents is not None else np.empty(0, np.int64)
        count = np.bincount(parents, minlength=len(self.ids))
        return np.arange(len(parents)), np.cumsum(count) - count, count


def _sorting(owner: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The order that sorts rows by (owner, index): one stable sort of a combined key (fast on the runs of a
    file written a sample at a time), or a lexsort when the indexes are too large to combine."""
    low = min(int(index.min(initial=0)), 0)
    span = int(index.max(initial=0)) - low + 1
    if span * (int(owner.max(initial=0)) + 1) >= 2**62:
        return np.lexsort((index, owner))
    return np.argsort(owner * span + (index - low), kind="stable")


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The positions start..start+count-1 of each (start, count), one run after the other."""
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts - (ends - counts), counts)


def _differ(found: pa.ChunkedArray | pa.Array, expected: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Where two columns of the same length differ; null equals null only."""
    try:
        equal = pc.fill_null(pc.equal(found, expected), False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # types that do not compare: every value differs
        return np.ones(len(found), bool)
    same = pc.or_(equal, pc.and_(pc.is_null(found), pc.is_null(expected)))
    return ~np.asarray(same.to_numpy(zero_copy_only=False), bool)


class _Found:
    """Differences found, and the first few described with their row (for the report's order)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[tuple[int, str]] = []

    def add(self, rows: np.ndarray, texts: list[str]) -> None:
        """Count `rows` (one per difference); `texts` describe the first of them, in order."""
        self.count += len(rows)
        self.first += [(int(row), text) for row, text in zip(rows, texts)]


def _value(array: pa.ChunkedArray | pa.Array, i: int) -> str:
    return repr(array[i].as_py())


def compare_rows(source: SourceLabels | ConfigLabels, rows: PreparedRows) -> tuple[int, list[str], int]:
    """Compare the label rows of one prepared config with the source's.

    Args:
        source: the source's labels.
        rows: the rows of one config; rows whose sample the source lacks are left to `row_counts`.

    Returns:
        (differences, the first ones described, the nested items compared). A difference is a value, or a
        row whose strokes or measures are not as many as the source's.
    """
    found = _Found()
    ids = rows.flat["sample_id"].combine_chunks()
    at_source = pc.fill_null(pc.index_in(ids, value_set=source.ids), -1).to_numpy().astype(np.int64)
    known = np.flatnonzero(at_source >= 0)

    def where(row: int) -> str:
        return f"{rows.shard_of([row])[0]}: sample {ids[row].as_py()}"

    for column in FLAT_COLUMNS[1:]:
        if column not in rows.flat.column_names:  # the features check reports it
            continue
        mine = rows.flat[column].take(known)
        theirs = source.flat(column).take(at_source[known])
        differ = np.flatnonzero(_differ(mine, theirs))
        texts = [f"{where(known[i])} {column} {_value(mine, i)}, source {_value(theirs, i)}" for i in differ[:KEPT]]
        found.add(known[differ], texts)
    compared = 0
    for name, fields in FIELDS.items():
        parents = rows.parents(name)
        if parents is None:
            continue
        order, start, count = source.items(name)
        counts = np.bincount(parents, minlength=rows.num_rows)
        expected = np.zeros(rows.num_rows, np.int64)
        expected[known] = count[at_source[known]]
        same = counts == expected
        same[at_source < 0] = False
        bad = np.flatnonzero(~same & (at_source >= 0))
        found.add(bad, [f"{where(r)} {name}: {counts[r]} item(s), source {expected[r]}" for r in bad[:KEPT]])
        mine_items = np.flatnonzero(same[parents])
        theirs_items = order[_ranges(start[at_source[same]], count[at_source[same]])] if same.any() else order[:0]
        compared += len(mine_items)
        position = mine_items - (np.cumsum(counts) - counts)[parents[mine_items]]
        for field_name in fields:
            values = rows.nested(name, field_name)
            if values is None:  # the features check reports it
                continue
            mine = values if len(mine_items) == len(values) else values.take(mine_items)
            theirs = source.column(name, field_name).take(theirs_items)
            differ = np.flatnonzero(_differ(mine, theirs))
            owners = parents[mine_items[differ]]
            texts = [
                f"{where(r)} {name}[{position[i]}].{field_name} {_value(mine, i)}, source {_value(theirs, i)}"
                for i, r in zip(differ[:KEPT], owners)
            ]
            found.add(owners, texts)
    found.first.sort(key=lambda pair: pair[0])
    return found.count, [text for _, text in found.first[:KEPT]], compared


def source_labels(
    configs: Mapping[str, PreparedRows], source: SousaSource | None, source_problem: str | None, given: bool
) -> CheckResult:
    """The `source_labels` check: the label rows of every config equal the source's labels.

    Args:
        configs: the rows of each config with a readable shard (`prepared_rows.read_rows`).
        source: the opened source, or None.
        source_problem: why the source did not open, if it did not.
        given: whether a source was given at all.

    Returns:
        The result: skipped without a source, failed when it does not open or a value differs.
    """
    name = "source_labels"
    if not given:
        return skipped(name, "needs --source, the SOUSA directory the folder was prepared from")
    if source is None:
        return CheckResult(name, "fail", f"cannot read the source: {source_problem}", 1)
    labels = SourceLabels(source)
    count, offenders, details = 0, [], {}
    for config, rows in configs.items():
        if rows.problems or "sample_id" not in rows.flat.column_names:
            count += 1
            offenders.append(f"config {config}: label rows do not read ({'; '.join(rows.problems) or 'no sample_id'})")
            continue
        differences, first, compared = compare_rows(labels, rows)
        count += differences
        offenders += first
        details[config] = {"rows": rows.num_rows, "nested_items": compared}
    return verdict(
        name,
        count,
        offenders,
        "label value(s) that differ from the source",
        f"every label of every row equals the source's, strokes and measures included ({', '.join(configs)})",
        details={"compared": details},
    )


def configs_agree(configs: Mapping[str, PreparedRows], reference: str | None, given: bool) -> CheckResult:
    """The `configs_agree` check: without a source, the label rows of every config equal those of `reference`.

    Each config is written from the same rows, so any difference is damage to one of them; the row rules
    (`rows_*`) run on `reference` only.

    Args:
        configs (`Mapping[str, PreparedRows]`):
            The rows of each config with a readable shard (`prepared_rows.read_rows`).
        reference (`str`, *optional*):
            The config the row rules checked (`prepared_rows.label_config`); None when there is none.
        given (`bool`):
            Whether a source was given: then `source_labels` compares every config with it instead.

    Returns:
        [`CheckResult`]: skipped with a source or with fewer than two configs, failed when a value differs.
    """
    name = "configs_agree"
    if given:
        return skipped(name, "every config is compared with the source (source_labels)")
    others = [config for config in configs if config != reference]
    if reference not in configs or not others:
        return skipped(name, "fewer than two configs hold label rows")
    base = configs[reference]
    if base.problems or "sample_id" not in base.flat.column_names:
        return skipped(name, f"the rows of {reference} do not read (see features and load)")
    labels = ConfigLabels(base)
    count, offenders = 0, []
    for config in others:
        rows = configs[config]
        if rows.problems or "sample_id" not in rows.flat.column_names:
            count += 1
            offenders.append(f"config {config}: label rows do not read ({'; '.join(rows.problems) or 'no sample_id'})")
            continue
        differences, first = compare_rows(labels, rows)[:2]
        count += differences
        offenders += [text.replace(", source ", f", {reference} ") for text in first]
    return verdict(
        name,
        count,
        offenders,
        f"label value(s) that differ from {reference}'s",
        f"every label of every row of {', '.join(others)} equals {reference}'s, strokes and measures included",
    )
