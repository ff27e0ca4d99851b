"""Label checks of splits.json: splits are disjoint, cover every profile, and what each holds."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..features import TIERS
from ..source_files import (
    SPLIT_KEYS,
)
from .label_files import LabelData
from .report import KEPT, CheckResult, verdict

logger = logging.getLogger(__name__)


def _split_of(data: LabelData) -> dict[str, list[str]]:
    """profile_id -> the splits whose list in splits.json holds it."""
    listed: dict[str, list[str]] = {}
    for split, profiles in data.splits.items():
        for profile in dict.fromkeys(profiles):
            listed.setdefault(profile, []).append(split)
    return listed


def split_disjoint(data: LabelData) -> CheckResult:
    """No profile is listed in two splits of splits.json.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "split_disjoint", failed, with the count and the first few of the
        profiles (with their splits); else passed.
    """
    twice = {profile: splits for profile, splits in _split_of(data).items() if len(splits) > 1}
    offenders = [f"{profile} (in {' and '.join(splits)})" for profile, splits in sorted(twice.items())]
    return verdict(
        "split_disjoint",
        len(offenders),
        offenders,
        "profile(s) listed in more than one split of splits.json",
        "no profile is listed in two splits",
    )


def split_coverage(data: LabelData) -> CheckResult:
    """Every sample's profile is listed in a split of splits.json.

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "split_coverage", failed, with the count and the first few of the
        samples (with their profile); else passed.
    """
    samples = data.tables["samples"]
    listed = pa.array(list(_split_of(data)), pa.string())
    bad = np.flatnonzero(~pc.fill_null(pc.is_in(samples["profile_id"], value_set=listed), False).to_numpy())
    profiles = samples["profile_id"].take(pa.array(bad[:KEPT], pa.int64())).to_pylist()
    offenders = [f"{sid} (profile {profile})" for sid, profile in zip(data.ids_at(bad[:KEPT]), profiles)]
    return verdict(
        "split_coverage",
        len(bad),
        offenders,
        "sample(s) whose profile is in no split of splits.json",
        "every sample's profile is in a split",
    )


def split_summary(data: LabelData) -> CheckResult:
    """Samples, profiles and skill-tier mix per split (a profile listed twice counts in its first split).

    Args:
        data ([`~validate.label_files.LabelData`]):
            The label tables and splits.json as read from the source (or a prepared folder's rows).

    Returns:
        [`~validate.report.CheckResult`]: "split_summary", always passed (it reports, it does not check), with
        split -> {"samples", "profiles", "profiles_listed", "skill_tier"} in `details`.
    """
    samples = data.tables["samples"]
    first_split = {profile: splits[0] for profile, splits in _split_of(data).items()}
    profiles = pc.unique(samples["profile_id"])
    lookup = pa.array([first_split.get(profile) for profile in profiles.to_pylist()], pa.string())
    split = lookup.take(pc.index_in(samples["profile_id"], value_set=profiles))
    table = pa.table({"split": split, "profile_id": samples["profile_id"], "skill_tier": samples["skill_tier"]})
    mix = table.group_by(["split", "skill_tier"]).aggregate([("profile_id", "count")]).to_pylist()
    per_profile = table.group_by("split").aggregate([("profile_id", "count_distinct")]).to_pylist()
    details: dict[str, Any] = {}
    for name in SPLIT_KEYS:
        tiers = {row["skill_tier"]: row["profile_id_count"] for row in mix if row["split"] == name}
        ordered = {tier: tiers[tier] for tier in (*TIERS, *sorted(set(tiers) - set(TIERS), key=str)) if tier in tiers}
        details[name] = {
            "samples": sum(ordered.values()),
            "profiles": next((row["profile_id_count_distinct"] for row in per_profile if row["split"] == name), 0),
            "profiles_listed": len(data.splits[name]),
            "skill_tier": ordered,
        }
    parts = []
    for name, info in details.items():
        tiers = ", ".join(f"{tier} {n}" for tier, n in info["skill_tier"].items())
        parts.append(f"{name} {info['samples']:,}" + (f" ({tiers})" if tiers else ""))
    return CheckResult("split_summary", "pass", "; ".join(parts), details=details)
