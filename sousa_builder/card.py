"""The dataset card (README.md) of a prepared folder or Hub repo, generated from the data it describes.

The YAML is built with huggingface_hub's `DatasetCardData` and datasets' own `configs` /
`dataset_info` writers. It carries the features on purpose: datasets 3.6 cannot read the Parquet
schema metadata that 4.x/5.x write, and with `dataset_info.features` every version reads every
version's files with the declared types. Every number in the body comes from the infos passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from datasets import Audio, ClassLabel, DatasetInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from .builder import Sousa, config_names
from .errors import CardMetadataError
from .features import MEASURE_FIELDS, STROKE_FIELDS, column_descriptions
from .layout import data_files_pattern, shard_glob
from .storage import is_url, join, parquet_files

SPLIT_ORDER = ("train", "validation", "test")
# The front matter of a card, as the Hub reads it: YAML between a first line '---' and the next '---' line.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?P<yaml>.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)
TASK_CATEGORIES = ["audio-classification", "tabular-classification", "tabular-regression"]
TAGS = [
    "audio", "music", "drum-rudiments", "synthetic", "snare-drum", "midi", "percussion", "music-information-retrieval",
]  # fmt: skip
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
CITATION = """@misc{sousa,
  title  = {SOUSA: Synthetic Open Unified Snare Assessment},
  note   = {Synthetic drum-rudiment performances with hierarchical quality labels},
  year   = {2026}
}"""


# The columns whose rows per split and class the card counts.
COUNTED_COLUMNS = ("skill_tier", "rudiment_slug")
# column -> class name -> split -> rows
LabelCounts = dict[str, dict[str, dict[str, int]]]


def size_category(num_rows: int) -> str:
    """The Hub's size category for a number of rows."""
    return next((label for limit, label in SIZE_CATEGORIES if num_rows < limit), "n>1M")


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, with libyaml where PyYAML has it: a card's YAML carries the features of every
    config, which the pure-Python parser is slow to read."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def card_metadata(text: str) -> dict[str, Any]:
    """The YAML front matter of a card's text (the block between '---' lines at its top), parsed.

    As `DatasetCard(text).data` finds it, parsed with `load_yaml`. Raises `CardMetadataError` saying
    what is wrong.
    """
    match = _FRONT_MATTER.match(text)
    if not match:
        raise CardMetadataError("no YAML front matter (a block between '---' lines at the top)")
    try:
        document = load_yaml(match["yaml"])
    except yaml.YAMLError as err:
        raise CardMetadataError(f"the YAML does not parse ({' '.join(str(err).split())})") from None
    if not isinstance(document, dict):
        raise CardMetadataError("the YAML is not a mapping")
    return document


def card_infos(text: str, ignore_metadata_errors: bool = False) -> dict[str, DatasetInfo]:
    """Config name -> info (features, splits, sizes) from the YAML of a card's text."""
    try:
        metadata = card_metadata(text)
    except CardMetadataError:
        return {}
    return metadata_infos(metadata, ignore_metadata_errors)


def metadata_infos(metadata: Mapping[str, Any], ignore_metadata_errors: bool = False) -> dict[str, DatasetInfo]:
    """Config name -> info from a card's parsed YAML, through datasets' own reader of `dataset_info`."""
    card_data = DatasetCardData(**metadata, ignore_metadata_errors=ignore_metadata_errors)
    return dict(DatasetInfosDict.from_dataset_card_data(card_data))


def label_counts(prepared: str | Path, infos: Mapping[str, DatasetInfo]) -> LabelCounts:
    """Rows per class and split of `COUNTED_COLUMNS`, read from the shards in `prepared` (a Path, or a URL string)
    of one config of `infos`
    (every config holds the same rows: the smallest present is read, two columns of it).

    Counted from the shards rather than carried in the card's YAML: the card is regenerated when publishing,
    and the shards are what is published. Class ids are named by the config's `ClassLabel`s.
    """
    name = next(name for name in reversed(config_names()) if name in infos)
    prepared = prepared if is_url(prepared) else Path(prepared)
    features = infos[name].features or {}
    counts: LabelCounts = {column: {} for column in COUNTED_COLUMNS}
    for split in (s for s in SPLIT_ORDER if s in (infos[name].splits or {})):
        files = parquet_files(join(prepared, name), shard_glob(split))
        table = pa.concat_tables(pq.read_table(f, columns=list(COUNTED_COLUMNS), filesystem=fs) for fs, f in files)
        for column in COUNTED_COLUMNS:
            feature = features.get(column)
            tally = pc.value_counts(table[column].combine_chunks())  # at once, not a Python loop over rows
            for value, rows in zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist()):
                label = feature.int2str(value) if isinstance(feature, ClassLabel) else str(value)
                counts[column].setdefault(label, {})[split] = rows
    for column in COUNTED_COLUMNS:  # class order: ids, as the ClassLabel names them
        names = features[column].names if isinstance(features.get(column), ClassLabel) else sorted(counts[column])
        counts[column] = {label: counts[column][label] for label in names if label in counts[column]}
    return counts


def dataset_card_text(
    infos: Mapping[str, DatasetInfo], pretty_name: str = "SOUSA", counts: LabelCounts | None = None
) -> str:
    """The card (README.md text) of a dataset holding the configs in `infos` (config name -> info with features
    and splits), built with `DatasetCardData` and datasets' `configs` / `dataset_info` writers. `counts`
    (from `label_counts`) adds the tables of rows per split and skill tier, and per split and rudiment."""
    ordered = [name for name in config_names() if name in infos]
    unknown = sorted(set(infos) - set(ordered))
    if unknown or not ordered:
        raise ValueError(f"no card for config(s) {unknown or 'none'}; known configs are {', '.join(config_names())}")
    rows = max(sum(split.num_examples for split in infos[name].splits.values()) for name in ordered)
    card_data = DatasetCardData(
        license="mit",
        language=["en"],
        pretty_name=pretty_name,
        size_categories=[size_category(rows)],
        task_categories=TASK_CATEGORIES,
        tags=TAGS,
    )
    DatasetInfosDict({name: infos[name] for name in ordered}).to_dataset_card_data(card_data)
    MetadataConfigs(
        {
            name: {
                "data_files": [
                    {"split": split, "path": data_files_pattern(name, split)}
                    for split in SPLIT_ORDER
                    if split in infos[name].splits
                ],
                **({"default": True} if name == ordered[0] else {}),
            }
            for name in ordered
        }
    ).to_dataset_card_data(card_data)
    return f"---\n{card_data.to_yaml()}\n---\n\n{_body(infos, ordered, pretty_name, counts)}"


def _megabytes(num_bytes: int | None) -> str:
    return "?" if num_bytes is None else f"{num_bytes / 1e6:,.1f} MB"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _body(infos: Mapping[str, DatasetInfo], ordered: list[str], pretty_name: str, counts: LabelCounts | None) -> str:
    descriptions = {config.name: config.description for config in Sousa.BUILDER_CONFIGS}
    default = ordered[0]
    splits = [s for s in SPLIT_ORDER if any(s in infos[name].splits for name in ordered)]
    lines = [
        f"# {pretty_name}: Synthetic Open Unified Snare Assessment",
        "",
        "Synthetic performances of the 40 PAS drum rudiments by simulated players in four skill tiers "
        "(beginner, intermediate, advanced, professional). Each sample is a FLAC recording of a snare-drum "
        "performance, its MIDI file, and labels at three levels: every stroke, every measure, and exercise "
        "scores for the whole performance.",
        "",
        "## Configurations",
        "",
        *_table(
            ("config", "contents", *(f"{s} rows" for s in splits), "download size"),
            [
                (
                    f"`{name}`" + (" (default)" if name == default else ""),
                    descriptions[name],
                    *(str(infos[name].splits[s].num_examples) if s in infos[name].splits else "0" for s in splits),
                    _megabytes(infos[name].download_size),
                )
                for name in ordered
            ],
        ),
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        *(f'{name} = load_dataset("<repo or folder>", "{name}")' for name in ordered),
        f'stream = load_dataset("<repo or folder>", "{default}", split="{splits[0]}", streaming=True)',
        "```",
        "",
        "Every configuration has the same rows in the same order (sorted by `sample_id`). "
        "`streaming=True` reads the shards as it goes, without downloading them first.",
        "",
        *(_decoding(splits[0]) if "audio" in ordered else []),
        "## Splits",
        "",
        "Splits are by player profile: all samples of a simulated player are in one split, so a model is "
        "evaluated on players it has never heard.",
        "",
        *_table(
            ("split", *(f"`{name}` rows" for name in ordered)),
            [
                (s, *(str(infos[name].splits[s].num_examples) if s in infos[name].splits else "0" for name in ordered))
                for s in splits
            ],
        ),
        "",
        *(_count_tables(counts, infos[default], splits) if counts else []),
        "## Columns",
        "",
        *_table(
            ("column", "type", "description"),
            [
                (f"`{column}`", _type_name(feature), column_descriptions().get(column, ""))
                for column, feature in infos[default].features.items()
            ],
        ),
        "",
        "## Class labels",
        "",
        "The classification targets are `ClassLabel`s: stored as class ids, named by "
        '`ds.features["skill_tier"].names` / `.int2str(id)`, and usable with '
        '`train_test_split(stratify_by_column="skill_tier")`.',
        "",
        *_table(
            ("column", "classes (id: name)"),
            [
                (f"`{column}`", ", ".join(f"{i}: {name}" for i, name in enumerate(feature.names)))
                for column, feature in infos[default].features.items()
                if isinstance(feature, ClassLabel)
            ],
        ),
        "",
        "## Label hierarchy",
        "",
        "An exercise (one row: metadata and the scores above) is made of measures, and each measure of "
        "strokes: `measures[i].stroke_start` to `stroke_end` (exclusive) index into `strokes`.",
        "",
        "`strokes` (list of structs, ordered by `index`):",
        "",
        *_table(("field", "type", "description"), [(f"`{n}`", f.dtype, d) for n, f, d in STROKE_FIELDS]),
        "",
        "`measures` (list of structs, ordered by `index`):",
        "",
        *_table(("field", "type", "description"), [(f"`{n}`", f.dtype, d) for n, f, d in MEASURE_FIELDS]),
        "",
        "## Auxiliary tables",
        "",
        "`auxiliary/strokes.parquet` and `auxiliary/measures.parquet` hold the same stroke and measure labels "
        "as flat tables, one row per stroke or measure, keyed by `sample_id` and `index`, for analysis "
        "with pandas or SQL without unnesting.",
        "",
        "## MIDI and augmentations",
        "",
        "Each performance is rendered several times with different audio augmentations (soundfont, room, "
        "microphone, compression, noise); the variants share an `augmentation_group_id` and have identical "
        "labels. The generator writes the MIDI file once per group; every row carries its group's MIDI.",
        "",
        "## License and citation",
        "",
        "MIT.",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


def _count_tables(counts: LabelCounts, info: DatasetInfo, splits: list[str]) -> list[str]:
    """Rows per split and skill tier (every tier), and per split and rudiment (the rudiments that have rows)."""
    lines = []
    for column, title in (("skill_tier", "skill tier"), ("rudiment_slug", "rudiment")):
        by_label = dict(counts[column])
        feature = (info.features or {}).get(column)
        if column == "skill_tier" and isinstance(feature, ClassLabel):
            by_label = {label: by_label.get(label, {}) for label in feature.names} | by_label
        rows = [(label, *(n.get(s, 0) for s in splits), sum(n.values())) for label, n in by_label.items()]
        totals = ("**total**", *(sum(row[k] for row in rows) for k in range(1, len(splits) + 2)))
        lines += [f"Rows per {title} (`{column}`) and split:", ""]
        lines += _table((column, *splits, "total"), [tuple(map(str, row)) for row in [*rows, totals]])
        lines.append("")
        if column == "rudiment_slug" and isinstance(feature, ClassLabel) and len(by_label) < feature.num_classes:
            lines += [f"{len(by_label)} of the {feature.num_classes} rudiments have rows.", ""]
    return lines


# Decoding `audio` with soundfile alone; the card test runs it. Same as `sousa_builder.decode`, without the package.
DECODE_SNIPPET = """import io

import soundfile as sf
from datasets import Audio, load_dataset


def decode(batch):
    \"\"\"The FLAC bytes of a batch of rows decoded with soundfile: no torch, torchcodec or librosa.\"\"\"
    batch["audio"] = [
        dict(zip(("array", "sampling_rate"), sf.read(io.BytesIO(audio["bytes"]), dtype="float32")))
        for audio in batch["audio"]
    ]
    return batch


ds = load_dataset("<repo or folder>", "audio", split="{split}").cast_column("audio", Audio(decode=False))
ds = ds.with_transform(decode)
print(ds[0]["audio"]["array"].shape, ds[0]["audio"]["sampling_rate"])  # (frames, 2) 44100: stereo float32

stream = load_dataset("<repo or folder>", "audio", split="{split}", streaming=True)
stream = stream.cast_column("audio", Audio(decode=False)).map(decode, batched=True)
print(next(iter(stream))["audio"]["sampling_rate"])"""


def _decoding(split: str) -> list[str]:
    """The card's section on decoding the `audio` column: natively, and with soundfile alone."""
    native = f'load_dataset("<repo or folder>", "audio", split="{split}")'
    return [
        "### Decoding the audio",
        "",
        f'`{native}[0]["audio"]` decodes with the `datasets` version\'s own `Audio` decoding: torchcodec '
        "(torch and FFmpeg) on datasets 4+, soundfile and librosa on 3.x. Without those, read the column as "
        "stored (`Audio(decode=False)`: the FLAC bytes as generated, 44.1 kHz stereo) and decode it with "
        "soundfile:",
        "",
        "```python",
        DECODE_SNIPPET.replace("{split}", split),
        "```",
        "",
        "With the sousa-builder package installed, `sousa_builder.decoded(ds)` does the same for a dataset, "
        "a dataset dict or a stream.",
        "",
    ]


def _type_name(feature: object) -> str:
    if isinstance(feature, Audio):
        return f"Audio ({feature.sampling_rate} Hz)"
    if isinstance(feature, ClassLabel):
        return f"ClassLabel ({feature.num_classes} classes)"
    if isinstance(feature, list) or type(feature).__name__ in ("List", "Sequence"):
        return "list of structs"
    return feature.dtype
