"""Reading an output in object storage (a URL): its objects and its manifest.

Writing one is `bucket_output.BucketStore`'s, through `store.replacing`; checking and reading one where it is, as
`validate` and `publish` do, is `prepared_files`'.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from .manifest import Manifest

logger = logging.getLogger(__name__)


def _objects(fs: Any, root: str) -> dict[str, dict]:
    """Relative path -> info of every object under `root` (listed anew: other processes and nodes write there)."""
    fs.invalidate_cache(root)
    found = fs.find(root, detail=True) if fs.exists(root) else {}
    prefix = f"{root}/"
    return {path[len(prefix) :]: info for path, info in found.items() if path.startswith(prefix)}


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as stream:
        while block := stream.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(fs: Any, path: str) -> Manifest | None:
    try:
        return Manifest.parse(fs.cat_file(path))
    except FileNotFoundError:
        return None
