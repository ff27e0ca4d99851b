"""`load_prepared` under both datasets versions with one HF datasets cache.

`load_dataset("user/sousa", config)` of a Hub repo with datasets 5.x and then 3.6 from one cache fails ("Feature
type 'List' not found"): both versions use one cache folder, keyed by the repo's commit, and 3.6 cannot read the
dataset_info.json that 5.x wrote there (docs: give each datasets version a cache of its own). `load_prepared` goes
through the packaged parquet builder, whose cache folder is keyed by the builder's code and the config's features
as well, so each version keeps its own entry: this checks that it still does, in both orders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import SAMPLE_SPLIT_ROWS

LOAD = """
import json, sys
import datasets
from sousa_builder import load_prepared
ds = load_prepared(sys.argv[1], "labels_only")
print(json.dumps([datasets.__version__, {split: d.num_rows for split, d in ds.items()}]))
"""


def test_one_cache_serves_both_datasets_versions(prepared_dir: Path, tmp_path: Path, other_python: str) -> None:
    for order, pythons in enumerate([(sys.executable, other_python), (other_python, sys.executable)]):
        cache = tmp_path / f"cache-{order}"
        env = dict(os.environ, HF_DATASETS_CACHE=str(cache), HF_DATASETS_OFFLINE="1")
        versions = []
        for python in pythons:
            run = subprocess.run([python, "-c", LOAD, str(prepared_dir)], env=env, capture_output=True, text=True)
            assert run.returncode == 0, run.stderr[-2000:]
            version, rows = json.loads(run.stdout.strip().splitlines()[-1])
            assert rows == SAMPLE_SPLIT_ROWS, version
            versions.append(version)
        assert versions[0].split(".")[0] != versions[1].split(".")[0], versions  # two majors, one cache
        assert len(list(cache.rglob("dataset_info.json"))) == 2  # an entry of each version's own
