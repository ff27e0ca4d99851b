"""SOUSA loading script, for datasets < 4 (4.0 removed loading scripts).

    load_dataset("./sousa.py", "midi_only", data_dir="./output/dataset", trust_remote_code=True)

Without data_dir it reads $SOUSA_DATA_DIR, else ./output/dataset. On datasets 4+ use the same
builder directly: `sousa_builder.Sousa(config_name="midi_only", data_dir=...)`, or
`sousa-builder prepare` and `load_dataset("<prepared folder>", "midi_only")`.
Needs the sousa-builder package installed (`pip install -e ".[script]"`).
"""

from sousa_builder.builder import Sousa

__all__ = ["Sousa"]
