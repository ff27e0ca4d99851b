"""Checks of a SOUSA source directory and of a prepared folder, with a report a CI job can read.

- `source`: the label files and splits.json of a SOUSA directory, then its media (`media`);
- `prepared`: a folder made by `sousa-builder prepare`, before it is published;
- `audio`: what the audio sounds like (`--audio`), on source files or embedded bytes;
- `report`: the `Report` of `CheckResult`s every check returns.
"""

from .audio import AudioSettings
from .hub_limits import HubLimits
from .prepared import validate_prepared
from .report import CheckResult, Report
from .source import validate_source

__all__ = ["AudioSettings", "CheckResult", "HubLimits", "Report", "validate_prepared", "validate_source"]
