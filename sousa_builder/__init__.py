"""sousa-builder: a SOUSA output directory -> a Hugging Face dataset (build, prepare, check, publish)."""

from .builder import Sousa, SousaConfig
from .decode import decode, decode_audio, decoded
from .errors import SousaError
from .load import load_prepared

__all__ = ["Sousa", "SousaConfig", "SousaError", "__version__", "decode", "decode_audio", "decoded", "load_prepared"]
__version__ = "0.1.0"
