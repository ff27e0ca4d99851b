"""sousa-builder: a SOUSA output directory -> a Hugging Face dataset (build, prepare, check, publish)."""

from .builder import Sousa, SousaConfig
from .errors import SousaError

__all__ = ["Sousa", "SousaConfig", "SousaError", "__version__"]
__version__ = "0.1.0"
