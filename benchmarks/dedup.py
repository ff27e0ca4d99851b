"""Estimate how much of a re-prepared `audio` shard Xet storage deduplicates, with and without Parquet CDC.

    python benchmarks/dedup.py --prepared /tmp/out --repeat 3     # a folder made by `sousa-builder prepare`
    python benchmarks/dedup.py --samples 400                      # prepares its own sample in a temporary folder

Takes the `audio` config's train shards (DIR/audio/train-*.parquet, concatenated, in sample_id order) as the new
table and, for each scenario, an old table it derives from it. Both are written with `prepare`'s own writer
(100-row row groups, FLAC uncompressed and PLAIN), once with pyarrow's content-defined chunking (datasets'
default options) and once without. Each file is cut into chunks as Xet cuts it: a gear hash
over a 64-byte window, 64 KiB target, 8 KiB min, 128 KiB max; each chunk is hashed with sha256. Dedup is the share
of the new file's bytes whose chunks appear in the old file (or earlier in the new one); the rest is uploaded.

Caveats: the gear table is random with a fixed seed, not Xet's table or keyed hash (boundaries differ, not their
statistics); one old file is compared with one new, not with everything the Hub already stores.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import datasets.config
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Features

from sousa_builder.builder import Sousa
from sousa_builder.shards import write_parquet

MIN_CHUNK, MAX_CHUNK, WINDOW = 8 * 1024, 128 * 1024, 64
MASK = np.uint64(0xFFFF_0000_0000_0000)  # 16 bits must be zero: a cut every 64 KiB on average
GEAR = np.random.default_rng(12345).integers(0, 2**64, size=256, dtype=np.uint64)
BLOCK = 4 * 1024 * 1024  # bytes hashed at a time: ~70 MB of numpy arrays


def _matches(data: np.ndarray) -> np.ndarray:
    """Offsets in `data` where the gear hash of the 64 bytes ending there has its top 16 bits zero.

    h_i = (h_{i-1} << 1) + GEAR[b_i] (uint64) is sum_k GEAR[b_{i-k}] << k over k < 64: summed by doubling the window.
    """
    h = GEAR[data]
    width = 1
    while width < WINDOW:
        h[width:] += h[:-width] << np.uint64(width)
        width *= 2
    return np.flatnonzero((h & MASK) == 0)


def _candidates(path: Path) -> np.ndarray:
    """Every offset of the file after which a chunk may end, read a block at a time (63 bytes of overlap)."""
    found, tail, offset = [], np.zeros(0, np.uint8), 0
    with open(path, "rb") as stream:
        while block := stream.read(BLOCK):
            data = np.concatenate([tail, np.frombuffer(block, np.uint8)])
            hits = _matches(data)
            found.append(hits[hits >= len(tail)] + (offset - len(tail)))
            offset += len(block)
            tail = data[-(WINDOW - 1) :]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def chunks(path: Path) -> list[tuple[bytes, int]]:
    """(sha256, length) of each chunk: it ends after the first match at least MIN_CHUNK in, or at MAX_CHUNK."""
    size, candidates = path.stat().st_size, _candidates(path)
    result, start = [], 0
    with open(path, "rb") as stream:
        while start < size:
            i = np.searchsorted(candidates, start + MIN_CHUNK - 1)
            found = i < len(candidates) and candidates[i] < start + MAX_CHUNK
            end = min(size, int(candidates[i]) + 1 if found else start + MAX_CHUNK)
            result.append((hashlib.sha256(stream.read(end - start)).digest(), end - start))
            start = end
    return result


def dedup(old: list[tuple[bytes, int]], new: list[tuple[bytes, int]]) -> tuple[int, int]:
    """(bytes of `new` already stored, bytes of `new`): a chunk seen in `old` or earlier in `new` is not sent."""
    seen, stored = {digest for digest, _ in old}, 0
    for digest, length in new:
        stored += length if digest in seen else 0
        seen.add(digest)
    return stored, sum(length for _, length in new)


def write(table: pa.Table, path: Path, cdc: bool) -> float:
    """Write `table` with `prepare`'s own writer and row groups, with or without CDC; return seconds."""
    started = time.perf_counter()
    batch = Sousa.builder_configs["audio"].rows_per_batch
    batches = (table.slice(start, batch) for start in range(0, table.num_rows, batch))
    write_parquet(path, batches, Features.from_arrow_schema(table.schema), cdc=cdc)
    return time.perf_counter() - started


def _without(table: pa.Table, rows: range | list[int]) -> pa.Table:
    """`table` without the given rows (ascending), made of slices: no copy."""
    edges = [-1, *rows, table.num_rows]
    return pa.concat_tables([table.slice(a + 1, b - a - 1) for a, b in zip(edges, edges[1:])])


def scenarios(new: pa.Table) -> dict[str, pa.Table]:
    """Old table of each scenario; the new table is always `new`."""
    n, mid, audio = new.num_rows, new.num_rows // 2, new.schema.get_field_index("audio")
    changed = new.slice(mid, 1).set_column(audio, new.schema.field(audio), new.slice(mid // 3, 1)["audio"])
    return {
        "rows inserted through the file (1 in 33)": _without(new, range(16, n, 33)),
        "rows appended (5%)": new.slice(0, n - round(0.05 * n)),
        "one sample's audio changed": pa.concat_tables([new.slice(0, mid), changed, new.slice(mid + 1)]),
        "one row inserted mid-file": _without(new, [mid]),
        "identical rewrite": new,
    }


def make_prepared(work: Path, samples: int) -> Path:
    """Make a sample of about `samples` samples and prepare its `audio` config in `work`."""
    from run import make_data, sample_shape  # benchmarks/run.py

    from sousa_builder.prepare import prepare

    source = make_data(work / "source", *sample_shape(samples))
    prepare(source, work / "prepared", configs=["audio"])
    shutil.rmtree(source)
    return work / "prepared"


def load(prepared: Path) -> pa.Table:
    """The train shards of the `audio` config, concatenated, in sample_id order."""
    files = sorted((prepared / "audio").glob("train-*.parquet"))
    if not files:
        raise SystemExit(f"no {prepared}/audio/train-*.parquet: is it a folder made by `sousa-builder prepare`?")
    table = pa.concat_tables([pq.read_table(file) for file in files])
    order = pc.sort_indices(table, [("sample_id", "ascending")])
    return table if np.array_equal(order.to_numpy(), np.arange(len(order))) else table.take(order)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, help="a folder made by `sousa-builder prepare` (default: a sample)")
    parser.add_argument("--samples", type=int, default=400, help="samples of the sample made otherwise (default 400)")
    parser.add_argument("--repeat", type=int, default=3, help="writes of the new file to time (default 3)")
    args = parser.parse_args(argv)
    if not hasattr(datasets.config, "DEFAULT_CDC_OPTIONS"):
        raise SystemExit(f"datasets {datasets.__version__} cannot write content-defined chunks: this needs datasets 4+")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sousa-dedup-"))
    seconds, sizes, stored = {}, {}, {}
    try:
        new = load(args.prepared or make_prepared(work, args.samples))
        olds = scenarios(new)
        for cdc in (True, False):
            print(f"writing and chunking, {'with' if cdc else 'without'} CDC", file=sys.stderr, flush=True)
            path = work / "new.parquet"
            seconds[cdc] = statistics.median([write(new, path, cdc) for _ in range(args.repeat)])
            sizes[cdc] = path.stat().st_size
            new_chunks = chunks(path)
            for name, old in olds.items():
                write(old, work / "old.parquet", cdc)
                stored[name, cdc] = dedup(chunks(work / "old.parquet"), new_chunks)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def cell(name: str, cdc: bool) -> str:
        hit, total = stored[name, cdc]
        return f"{100 * hit / total:.1f}% ({(total - hit) / 1e6:.2f} MB)"

    print(f"| scenario ({new.num_rows} rows) | CDC: dedup % (MB to upload) | no CDC: dedup % (MB to upload) |")
    print("|---|---|---|")
    for name in olds:
        print(f"| {name} | {cell(name, True)} | {cell(name, False)} |")
    print(
        f"\nNew file: {sizes[True] / 1e6:.1f} MB with CDC, {sizes[False] / 1e6:.1f} MB without; written in "
        f"{seconds[True]:.2f} s with CDC, {seconds[False]:.2f} s without (median of {args.repeat}).\n"
        f"datasets {datasets.__version__}, pyarrow {pa.__version__}; {time.perf_counter() - started:.0f} s in all.\n"
        f"Command: `{' '.join(['python benchmarks/dedup.py', *argv])}`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
