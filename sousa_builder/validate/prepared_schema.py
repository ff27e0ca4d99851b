"""The declared layout of a prepared folder: its README YAML lists what is on disk, and its features (README
and every shard's schema) are the builder's declared ones."""

from __future__ import annotations

import datasets
import pyarrow as pa

from ..builder import Sousa, config_names
from ..card import metadata_infos
from ..features import features_for
from ..layout import README
from .prepared_folder import PreparedFolder
from .report import CheckResult, verdict


def readme_check(prepared: PreparedFolder) -> CheckResult:
    """The README YAML parses, lists every config folder and shard on disk, and nothing that is not there."""
    if prepared.readme is None:
        return CheckResult("readme", "fail", "the README does not describe the folder", 1, [prepared.readme_problem])
    offenders = []
    if not prepared.configs:
        offenders.append(f"{README}: the YAML has no `configs` list")
    known = config_names()
    for name in prepared.configs:
        if name not in known:
            offenders.append(f"config {name}: not a config the builder declares ({', '.join(known)})")
    listed: dict[str, tuple[str, str]] = {}
    for name, splits in prepared.configs.items():
        for split, patterns in splits.items():
            matched = {relative for pattern in patterns for relative in prepared.glob(pattern)}
            if not matched:
                offenders.append(f"config {name} split {split}: {', '.join(patterns)} matches no file")
            listed.update(dict.fromkeys(matched, (name, split)))
    for folder in sorted({s.config for s in prepared.shards} - set(prepared.configs)):
        offenders.append(f"{folder}/: a config folder the README does not list")
    for shard in prepared.shards:
        if shard.config in prepared.configs and listed.get(shard.path) != (shard.config, shard.split):
            where = listed.get(shard.path)
            found = f"listed as {where[0]}/{where[1]}" if where else "not listed"
            offenders.append(f"{shard.path}: {found}, expected under config {shard.config} split {shard.split}")
    return verdict(
        "readme",
        len(offenders),
        offenders,
        "mismatch(es) between the README YAML and the folder",
        f"the README YAML lists the {len(prepared.configs)} config(s) and every shard on disk",
    )


def _declared(config: str) -> datasets.Features | None:
    spec = Sousa.builder_configs.get(config)
    return features_for(spec.with_midi, spec.with_audio) if spec is not None else None


def features_check(prepared: PreparedFolder) -> CheckResult:
    """The README features of each config, and the schema of each shard, are the builder's declared ones."""
    offenders = []
    try:  # the README was parsed once by `_scan`; datasets reads its `dataset_info` the same way
        readme_infos, unreadable = metadata_infos(prepared.readme or {}), None
    except Exception as err:  # reported, whatever datasets raises
        readme_infos, unreadable = {}, type(err).__name__
    for name in sorted({s.config for s in prepared.shards} | set(prepared.configs)):
        declared = _declared(name)
        if declared is None:
            offenders.append(f"config {name}: no declared features (not a builder config)")
            continue
        if name in prepared.configs:
            found = readme_infos[name].features if name in readme_infos else None
            if unreadable:
                offenders.append(f"config {name}: the README features do not load ({unreadable})")
            elif found is None:
                offenders.append(f"config {name}: the README declares no features (dataset_info)")
            else:
                offenders += [f"{README} config {name}: {d}" for d in _differences(declared, found)]
        expected = declared.arrow_schema
        for shard in prepared.shards_of(name):
            if shard.problem:
                offenders.append(f"{shard.path}: {shard.problem}")
                continue
            offenders += [f"{shard.path}: {d}" for d in _schema_differences(expected, shard.schema)]
    return verdict(
        "features",
        len(offenders),
        offenders,
        "difference(s) from the declared features",
        "README features and every shard's schema are the builder's declared ones",
    )


def _differences(declared: datasets.Features, found: datasets.Features) -> list[str]:
    """Columns missing, undeclared or of another type; `found` is read by this datasets version, as `declared`."""
    differences = [f"column {c} missing" for c in declared if c not in found]
    differences += [f"column {c} not declared" for c in found if c not in declared]
    differences += [
        f"column {c} is {found[c]}, declared {declared[c]}" for c in declared if c in found and found[c] != declared[c]
    ]
    return differences


def _schema_differences(expected: pa.Schema, schema: pa.Schema) -> list[str]:
    found = [f"column {n} missing" for n in expected.names if n not in schema.names]
    found += [f"column {n} not declared" for n in schema.names if n not in expected.names]
    found += [
        f"column {n} has type {schema.field(n).type}, declared {expected.field(n).type}"
        for n in expected.names
        if n in schema.names and not schema.field(n).type.equals(expected.field(n).type)
    ]
    return found
