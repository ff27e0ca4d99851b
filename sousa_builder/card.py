"""The README.md of a prepared folder: YAML `configs` + `dataset_info`, and a short body.

The YAML carries the features on purpose: datasets 3.6 cannot read the Parquet schema metadata
that 4.x/5.x write, and with `dataset_info.features` every version reads every version's files
with the declared types.
"""

from __future__ import annotations

from collections.abc import Mapping

from datasets import DatasetInfo
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from .builder import Sousa, config_names


def data_files_pattern(config_name: str, split: str) -> str:
    """Where a split's shards live in the Hub layout."""
    return f"{config_name}/{split}-*"


def prepared_card(infos: Mapping[str, DatasetInfo]) -> DatasetCard:
    """A dataset card for the configs in `infos` (config name -> info with features and splits)."""
    ordered = [name for name in config_names() if name in infos]
    default = ordered[0]
    card_data = DatasetCardData(license="mit", pretty_name="SOUSA", language=["en"])
    DatasetInfosDict({name: infos[name] for name in ordered}).to_dataset_card_data(card_data)
    MetadataConfigs(
        {
            name: {
                "data_files": [
                    {"split": split, "path": data_files_pattern(name, split)} for split in infos[name].splits
                ],
                **({"default": True} if name == default else {}),
            }
            for name in ordered
        }
    ).to_dataset_card_data(card_data)
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{_body(infos, ordered)}")


def _body(infos: Mapping[str, DatasetInfo], ordered: list[str]) -> str:
    descriptions = {config.name: config.description for config in Sousa.BUILDER_CONFIGS}
    lines = [
        "# SOUSA: Synthetic Open Unified Snare Assessment",
        "",
        "Synthetic drum-rudiment performances with FLAC audio, MIDI and labels at three levels "
        "(strokes, measures, exercise scores). Splits are by player profile.",
        "",
        "| config | contents | " + " | ".join(f"{split} rows" for split in ("train", "validation", "test")) + " |",
        "|---|---|---|---|---|",
    ]
    for name in ordered:
        splits = infos[name].splits
        counts = [str(splits[s].num_examples) if s in splits else "-" for s in ("train", "validation", "test")]
        lines.append(f"| `{name}` | {descriptions[name]} | " + " | ".join(counts) + " |")
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("<this folder or repo>", "{ordered[0]}")',
        "```",
        "",
        "`auxiliary/strokes.parquet` and `auxiliary/measures.parquet` hold the stroke and measure labels "
        "as flat tables (one row per stroke / measure, keyed by `sample_id` and `index`).",
        "",
    ]
    return "\n".join(lines)
