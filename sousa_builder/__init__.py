"""sousa-builder: a SOUSA output directory -> a Hugging Face dataset (build, prepare, check, publish).

The names below are imported on first use (PEP 562), so that `import sousa_builder.cli` (the command line's
entry point) does not import `datasets` before the command line can handle Ctrl-C.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .builder import Sousa, SousaConfig
    from .decode import decode, decode_audio, decoded
    from .errors import SousaError
    from .load import load_prepared

__all__ = ["Sousa", "SousaConfig", "SousaError", "__version__", "decode", "decode_audio", "decoded", "load_prepared"]
__version__ = "0.1.0"

_LAZY = {
    "Sousa": "builder", "SousaConfig": "builder", "decode": "decode", "decode_audio": "decode", "decoded": "decode",
    "SousaError": "errors", "load_prepared": "load",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
