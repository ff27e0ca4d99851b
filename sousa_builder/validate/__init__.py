"""Checks of a SOUSA source directory and of a prepared folder, with a report a CI job can read.

- `rules`: the rules about a source's labels, which every reader of a source also enforces;
- `source`: the label files and splits.json of a SOUSA directory, then its media (`media`);
- `prepared`: a folder made by `sousa-builder prepare`, before it is published;
- `audio`: what the audio sounds like (`--audio`), on source files or embedded bytes;
- `report`: the `Report` of `CheckResult`s every check returns.

The names below are imported when first used, so that a reader of a source can import `rules` without
the prepared-folder checks (which import the reader back).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audio import AudioSettings
    from .hub_limits import HubLimits
    from .prepared import validate_prepared
    from .report import CheckResult, Report
    from .source import validate_source

_HOMES = {
    "AudioSettings": "audio",
    "HubLimits": "hub_limits",
    "validate_prepared": "prepared",
    "CheckResult": "report",
    "Report": "report",
    "validate_source": "source",
}
__all__ = ["AudioSettings", "CheckResult", "HubLimits", "Report", "validate_prepared", "validate_source"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
