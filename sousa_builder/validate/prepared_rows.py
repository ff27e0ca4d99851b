"""The label rows of a prepared folder, checked by the same row rules as a source's labels.

`PreparedRows.read` reads the label columns of one config's shards, never the audio or MIDI bytes:
the flat columns (class ids mapped back to their names), and the nested strokes and measures
flattened, each item with the row it belongs to. As a `LabelData` the rows go through the source's
own label checks (`validate.rules.LABEL_CHECKS`), so each rule is written once: `num_strokes`
equals the strokes, indexes run 0..n-1, values are in range, categories in their vocabularies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..builder import config_names
from ..features import FLAT_COLUMNS, SAMPLE_COLUMNS, SCORE_COLUMNS, class_label_columns, label_features
from ..prepared_files import parquet_file
from .label_files import READ_ONLY, LabelData, key_positions
from .prepared_folder import PreparedFolder, Shard
from .report import CheckResult, first_line, skipped
from .rules import LABEL_CHECKS, release_memory

logger = logging.getLogger(__name__)

# The source's label checks that hold for the rows of a prepared config. Not these: known_samples and
# one_exercise_row (a row holds its own scores, strokes and measures) and the split checks (splits.json
# is not in the folder; split_profiles checks the rows' profiles).
ROW_RULES = (
    "unique_sample_ids",
    "stroke_counts",
    "measure_counts",
    "stroke_indexes",
    "measure_indexes",
    "measure_ranges",
    "augmentation_groups",
    "score_ranges",
    "velocity_ranges",
    "positive_values",
    "categorical_values",
)
# A row rule's check name in a prepared report: `rows_stroke_counts` runs `stroke_counts` on the rows.
PREFIX = "rows_"
NESTED = ("strokes", "measures")
# Of the nested fields the rules read these only; the comparison with the source reads every field, one at a time.
RULE_FIELDS = {name: tuple(column for column in READ_ONLY[name] if column != "sample_id") for name in NESTED}
_DECLARED = label_features().arrow_schema


def row_rule_names() -> list[str]:
    """The names of the row-rule checks, in report order (`rows_unique_sample_ids`, ...)."""
    return [PREFIX + name for name in ROW_RULES]


def label_config(prepared: PreparedFolder) -> str | None:
    """The config whose rows the row rules check: `labels_only` if it has a readable shard, else the first
    builder config that has one (every config holds the same label columns), or None."""
    present = {shard.config for shard in prepared.readable}
    return next((name for name in ("labels_only", *config_names()) if name in present), None)


@dataclass
class PreparedRows:
    """The label columns of one config of a prepared folder, as read from its readable shards.

    `flat` holds sample_id and the flat label columns that every shard holds and that convert to their
    declared types, class columns as names. Nested fields are read on demand (`nested`), one at a time.
    """

    out: Path | str
    config: str
    shards: list[Shard]
    starts: np.ndarray  # the first row of each shard, then the number of rows
    flat: pa.Table
    problems: list[str] = field(default_factory=list)
    _parents: dict[str, np.ndarray | None] = field(default_factory=dict)
    _kept: dict[tuple[str, str], pa.ChunkedArray | None] = field(default_factory=dict)

    @classmethod
    def read(cls, out: Path | str, config: str, shards: Sequence[Shard]) -> PreparedRows:
        """Read the flat label columns of `shards` (the readable shards of `config`, in folder order).

        Args:
            out: the prepared output (a local folder, or a URL).
            config: the config the shards belong to.
            shards: its shards, as `prepared_folder.scan` found them.

        Returns:
            The rows; what did not read or convert is in `problems` (the features and load checks report
            it too) and its columns are left out.
        """
        tables, problems = [], []
        for shard in shards:
            names = [column for column in FLAT_COLUMNS if column in shard.schema.names]
            try:
                table = parquet_file(out, shard.path).read(columns=names)
            except (OSError, pa.ArrowException) as err:
                problems.append(f"{shard.path}: label columns do not read ({first_line(err)})")
                continue
            columns = {}
            for name in names:
                try:
                    columns[name] = _declared(table[name], _DECLARED.field(name).type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                    problems.append(f"{shard.path}: column {name} does not convert ({first_line(err)})")
            tables.append(pa.table(columns))
        if problems:  # rows missing from the middle would misplace every nested item: check none
            tables = []
        common = [c for c in FLAT_COLUMNS if tables and all(c in t.column_names for t in tables)]
        flat = pa.concat_tables([t.select(common) for t in tables]) if tables else pa.table({})
        for column, label in class_label_columns().items():
            if column in flat.column_names:
                flat = flat.set_column(flat.schema.get_field_index(column), column, _names(flat[column], label.names))
        starts = np.cumsum([0, *(shard.rows for shard in shards)]) if tables else np.zeros(1, np.int64)
        return cls(out, config, list(shards) if tables else [], starts.astype(np.int64), flat, problems)

    @property
    def num_rows(self) -> int:
        """The rows read, across the config's shards."""
        return self.flat.num_rows

    def nested(self, name: str, field_name: str, keep: bool = False) -> pa.ChunkedArray | None:
        """Field `field_name` of every item of nested column `name` (strokes, measures) in row order, at its
        declared type; None when a shard lacks it or it does not convert. With `keep`, it is kept for later."""
        if (name, field_name) in self._kept:
            return self._kept[(name, field_name)]
        chunks, parents = [], []
        for shard, start in zip(self.shards, self.starts):
            leaf = _leaf(shard, name, field_name)
            if leaf is None:
                return None
            try:
                lists = parquet_file(self.out, shard.path).read(columns=[leaf])[name]
                values = _declared(
                    pc.struct_field(pc.list_flatten(lists), field_name),
                    _DECLARED.field(name).type.value_type.field(field_name).type,
                )
            except (OSError, pa.ArrowException, KeyError) as err:
                logger.debug("%s: %s.%s does not read: %s", shard.path, name, field_name, err)
                return None
            chunks += values.chunks
            if name not in self._parents:
                parents += [pc.list_parent_indices(chunk).to_numpy() + start for chunk in lists.chunks]
        if name not in self._parents:
            self._parents[name] = np.concatenate([np.empty(0, np.int64), *parents]).astype(np.int64)
        values = pa.chunked_array(chunks, _DECLARED.field(name).type.value_type.field(field_name).type)
        if keep:
            self._kept[(name, field_name)] = values
        return values

    def parents(self, name: str) -> np.ndarray | None:
        """The row of each item of nested column `name`, in row order (read with its `index` field)."""
        if name not in self._parents:
            self.nested(name, "index", keep=True)
        return self._parents.get(name)

    def shard_of(self, rows: np.ndarray | Sequence[int]) -> list[str]:
        """The shard (path) holding each of these rows."""
        found = np.searchsorted(self.starts, np.asarray(rows, np.int64), side="right") - 1
        return [self.shards[i].path for i in found]

    def label_data(self) -> LabelData:
        """The rows as a `LabelData`: samples, exercises, and the strokes and measures (the rules' fields)."""
        where = f"the rows of {self.config}"
        origin = {"samples": where, "exercises": where, **{n: f"the {n} column of {self.config}" for n in NESTED}}
        data = LabelData(self.out, origin=origin)
        if "sample_id" not in self.flat.column_names:
            return data
        flat = self.flat.combine_chunks()
        data.sample_ids = flat["sample_id"].combine_chunks()
        data.first = pc.index_in(data.sample_ids, value_set=data.sample_ids).to_numpy(zero_copy_only=False)
        data.first = data.first.astype(np.int64)
        samples = [name for name, _, _ in SAMPLE_COLUMNS if name in flat.column_names]
        scores = [name for name, _, _ in SCORE_COLUMNS if name in flat.column_names]
        data.tables["samples"] = flat.select(samples)
        data.tables["exercises"] = flat.select(["sample_id", *scores])
        data.keys["exercises"] = key_positions(flat["sample_id"], data.sample_ids)
        for name in NESTED:
            parents = self.parents(name)
            if parents is None:
                continue
            # Each item's sample_id, as the source's big tables hold it: a dictionary of the row ids.
            owner = pa.DictionaryArray.from_arrays(pa.array(parents, pa.int64()), data.sample_ids)
            columns = {"sample_id": owner}
            for field_name in RULE_FIELDS[name]:
                values = self.nested(name, field_name, keep=True)
                if values is not None:
                    columns[field_name] = values
            data.tables[name] = pa.table(columns)
            data.keys[name] = key_positions(data.tables[name]["sample_id"], data.sample_ids)
        return data

    def located(self, offenders: Sequence[str], sample_ids: pa.Array) -> list[str]:
        """`offenders` of a label check, each that starts with a sample id prefixed with the shard holding it."""
        heads = pa.array([offender.split(" ", 1)[0] for offender in offenders], pa.string())
        rows = pc.index_in(heads, value_set=sample_ids).to_pylist()
        return [
            f"{self.shard_of([row])[0]}: {offender}" if row is not None else offender
            for offender, row in zip(offenders, rows)
        ]


def _declared(column: pa.ChunkedArray, declared: pa.DataType) -> pa.ChunkedArray:
    """`column` at its declared type (an int column written as whole floats converts; 1.5 does not)."""
    return column if column.type == declared else column.cast(declared)


def _names(ids: pa.ChunkedArray, names: Sequence[str]) -> pa.ChunkedArray:
    """ClassLabel ids as their names; an id that names no class as 'class id N', for the checks to report."""
    valid = pc.and_(pc.greater_equal(ids, 0), pc.less(ids, len(names)))
    named = pa.array(names, pa.string()).take(pc.if_else(valid, ids, 0))
    unnamed = pc.binary_join_element_wise("class id ", ids.cast(pa.string()), "")
    return pc.if_else(valid, named, unnamed)


def _leaf(shard: Shard, name: str, field_name: str) -> str | None:
    """The Parquet path of a nested field's leaf (`strokes.list.element.index`), whatever the list's naming."""
    schema = shard.metadata.schema
    for i in range(shard.metadata.num_columns):
        parts = schema.column(i).path.split(".")
        if len(parts) == 4 and parts[0] == name and parts[3] == field_name:
            return schema.column(i).path
    return None


def read_rows(prepared: PreparedFolder) -> dict[str, PreparedRows]:
    """The flat label rows of every builder config with a readable shard, the row rules' config first."""
    first = label_config(prepared)
    names = [first] if first else []
    present = {shard.config for shard in prepared.readable}
    names += [name for name in config_names() if name != first and name in present]
    readable = {name: [s for s in prepared.shards_of(name) if s.problem is None] for name in names}
    return {name: PreparedRows.read(prepared.out, name, shards) for name, shards in readable.items()}


def _unusable(rows: PreparedRows, data: LabelData, needs: Mapping[str, Sequence[str]]) -> str | None:
    """What of `needs` (table -> columns) the rows lack, or None."""
    missing = []
    for name, columns in needs.items():
        table = data.tables.get(name)
        absent = [c for c in columns if table is None or c not in table.column_names]
        if absent:
            where = f"the {name} column's field(s)" if name in NESTED else "column(s)"
            missing.append(f"{where} {', '.join(absent)}")
    if not missing:
        return None
    return f"{rows.config} rows lack usable {'; '.join(missing)} (see features, load)"


def row_rule_checks(rows: PreparedRows | None) -> list[CheckResult]:
    """The source's row rules on the label rows of one prepared config, one `rows_` check per rule.

    Args:
        rows: the rows of the config to check (`read_rows`), or None when no config is readable.

    Returns:
        One result per rule in `ROW_RULES`, named `rows_<rule>`; offenders name the shard and the sample.
    """
    if rows is None:
        return [skipped(name, "no readable config shard (see readme, features)") for name in row_rule_names()]
    if rows.problems:
        reason = f"{rows.config} rows do not read: {rows.problems[0]}"
        return [skipped(name, reason) for name in row_rule_names()]
    data = rows.label_data()
    results = []
    for name, needs, check in LABEL_CHECKS:
        if name not in ROW_RULES:
            continue
        began = time.perf_counter()
        reason = _unusable(rows, data, needs)
        result = skipped(name, reason) if reason else check(data)
        release_memory()
        result.name = PREFIX + name
        result.offenders = rows.located(result.offenders, data.sample_ids)
        result.details = {**result.details, "config": rows.config}
        results.append(result)
        logger.debug("%s: %.3f s", result.name, time.perf_counter() - began)
    return results
