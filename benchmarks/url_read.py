"""Local disk and memory of `validate --prepared URL` and `publish --prepared URL` (issue 22: no full local copy).

    python benchmarks/url_read.py --samples 1000 --results benchmarks/RESULTS.md   # at 4N, as run.py's 4N
    python benchmarks/url_read.py --samples 30 --work /tmp/url-read                 # a quick run
    python benchmarks/url_read.py --samples 1000 --baseline /path/to/older/checkout # the same, before/after

Makes the sample that benchmarks/run.py makes at 4N for `--samples N` (`sousa_builder.sample.make_sample`),
starts moto's S3 server and the test Hub (tests/hub_server.py) on 127.0.0.1 as run.py does, prepares the `audio`
config into the bucket once, then runs `validate --prepared s3://...` and `publish --prepared s3://...` (each in a
fresh process, with TMPDIR an empty folder of its own) and reports for each: the peak of the bytes under its
TMPDIR (sampled every 50 ms), the bytes the process wrote to storage (`write_bytes` of /proc/PID/io, which also
counts what is written and removed between two samples), its peak RSS (VmHWM) and its time. With `--baseline`,
the same steps run on another checkout of sousa-builder (PYTHONPATH) for comparison. Prints one JSON object and a
Markdown table; with `--results benchmarks/RESULTS.md`, puts them in that file's "Reading a URL" section (between
its markers; run.py rewrites the rest of the file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MB = 1e6


def _folder_bytes(folder: Path) -> int:
    total = 0
    for directory, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):  # removed between the listing and the stat
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def worker(command: list[str]) -> None:
    """Run the CLI in this process, then print its exit code, peak RSS and bytes written to storage."""
    from sousa_builder.cli import main

    started = time.perf_counter()
    code = main(command)
    seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    print("RESULT " + json.dumps({"exit": code, "seconds": seconds, "peak_rss": peak,
                                  "written": int(io["write_bytes"])}), flush=True)  # fmt: skip


def run_step(command: list[str], env: dict[str, str], work: Path, pythonpath: Path) -> dict:
    """One step in a fresh process with an empty TMPDIR; the peak bytes under it, sampled while it runs."""
    temporary = Path(tempfile.mkdtemp(prefix="tmpdir-", dir=work))
    step_env = {**env, "TMPDIR": str(temporary), "PYTHONPATH": f"{pythonpath}{os.pathsep}{REPO / 'benchmarks'}"}
    process = subprocess.Popen(
        [sys.executable, str(HERE / "url_read.py"), "--worker", json.dumps(command)],
        env=step_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _folder_bytes(temporary))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    line = next((line for line in out.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{' '.join(command)}: no result (exit {process.returncode}): {err.strip()[-2000:]}")
    result = json.loads(line.removeprefix("RESULT "))
    result["peak_tmpdir"] = max(peak[0], _folder_bytes(temporary))
    if result["exit"] != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {result['exit']}: {err.strip()[-2000:]}")
    return result


def bench(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(HERE))
    import pyarrow.parquet as pq
    from run import forget_repo, hub_env, make_data, s3_env, sample_shape, start_hub, start_s3

    work = Path(args.work).absolute()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "labels/samples.parquet").is_file():
        profiles, rudiments, augmentations = sample_shape(args.samples)
        print(f"making the 4N sample of run.py --samples {args.samples} in {data}", flush=True)
        make_data(data, profiles * 4, rudiments, augmentations)
    server, s3, why = start_s3()
    if s3 is None:
        raise SystemExit(why)
    hub = start_hub()
    env = {**hub_env(hub, work / "hf-home"), **s3_env(s3)}
    out = f"s3://{s3.bucket()}/sousa"
    subprocess.run(
        [sys.executable, "-m", "sousa_builder", "prepare", str(data), "--out", out, "--configs", "audio"],
        env={**env, "PYTHONPATH": str(REPO)},
        check=True,
    )
    objects = s3.fs.find(out.removeprefix("s3://"), detail=True)
    shards = sorted(info["size"] for key, info in objects.items() if key.endswith(".parquet"))
    facts = {
        "samples": pq.read_metadata(data / "labels/samples.parquet").num_rows,
        "out": out,
        "output_bytes": sum(info["size"] for info in objects.values()),
        "shards": len(shards),
        "largest_shard": shards[-1] if shards else 0,
    }
    facts["ranged_get"] = _ranged_get_seconds(s3, out)
    checkouts = {"this": REPO, **({"baseline": Path(args.baseline).absolute()} if args.baseline else {})}
    for name, checkout in checkouts.items():
        for repeat in range(args.repeat):
            repo = f"{HUB_REPO}-{name}-{repeat}"
            facts.setdefault(name, []).append({
                "validate": run_step(["validate", "--prepared", out], env, work, checkout),
                "publish": run_step(["publish", repo, "--prepared", out, "--yes"], env, work, checkout),
            })  # fmt: skip
            forget_repo(hub, repo)
    hub.stop()
    server.stop()
    return facts


HUB_REPO = "alice/url-read"


def _ranged_get_seconds(s3, out: str) -> dict[str, float]:
    """Seconds of one 8 MB ranged GET from moto, on the largest and the smallest shard (median of 3): moto reads the
    whole object for each ranged GET, so its cost grows with the object, unlike S3's."""
    import statistics

    shards = {key: info["size"] for key, info in s3.fs.find(out.removeprefix("s3://"), detail=True).items()}
    shards = {key: size for key, size in shards.items() if key.endswith(".parquet")}
    found = {}
    for name, key in (("largest", max(shards, key=shards.get)), ("smallest", min(shards, key=shards.get))):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            s3.fs.cat_file(key, start=0, end=min(8 << 20, shards[key]))
            times.append(time.perf_counter() - started)
        found[name] = statistics.median(times)
    return found


def table(facts: dict) -> str:
    lines = [
        "| checkout | step | peak TMPDIR MB | written to disk MB | peak RSS MiB | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("this", "baseline"):
        for steps in facts.get(name, []):
            for step, r in steps.items():
                lines.append(
                    f"| {name} | {step} --prepared s3://... | {r['peak_tmpdir'] / MB:,.1f} | "
                    f"{r['written'] / MB:,.1f} | {r['peak_rss'] / 2**20:,.0f} | {r['seconds']:.1f} |"
                )
    return "\n".join(lines)


SECTION = ("<!-- url_read.py: begin -->", "<!-- url_read.py: end -->")


def section(facts: dict, command: str) -> str:
    """RESULTS.md's section on reading a URL, with the figures and the command that made them."""
    this = facts["this"]
    most = {step: max(r[step]["peak_tmpdir"] for r in this) for step in ("validate", "publish")}
    met = "met" if max(most.values()) <= max(2 * facts["largest_shard"], 1e9) else "NOT met"
    lines = [
        SECTION[0],
        "## Reading a URL: validate and publish --prepared s3://... (issue 22)",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. The `audio` config of "
        f"{facts['samples']} samples (the 4N above) prepared into moto's S3 on 127.0.0.1: "
        f"{facts['output_bytes'] / MB:,.0f} MB in {facts['shards']} shard(s), the largest "
        f"{facts['largest_shard'] / MB:,.0f} MB. Each step runs in a fresh process with an empty TMPDIR of its own; "
        "peak TMPDIR is the most bytes under it (sampled every 50 ms), written to disk the process's `write_bytes` "
        "(/proc/PID/io: anything written and removed between two samples counts too), peak RSS its VmHWM. Seconds "
        "include the imports; the Hub is tests/hub_server.py (plain LFS) in the harness process.",
        "",
        table(facts),
        "",
        f"The issue's target, local disk within about two shards (~1 GB at the default shard size): {met}, "
        f"{most['validate'] / MB:,.1f} MB under TMPDIR for validate and {most['publish'] / MB:,.1f} MB for publish: "
        "both read the objects where they are (footers, columns, sha256 as streams; publish streams each object "
        "from the bucket to the Hub).",
        "",
        "The seconds are moto's more than ours: moto reads the whole object for every ranged GET (one 8 MB ranged GET "
        f"took {facts['ranged_get']['largest']:.2f} s on the largest shard, {facts['ranged_get']['smallest']:.2f} s "
        "on the smallest), and reading in place makes many ranged GETs (footers, column chunks, 8 MB blocks of each "
        "stream), where the baseline's copy made one GET per object. On S3 a GET costs its latency, whatever the "
        "object's size; these seconds are not a figure for it.",
        SECTION[1],
    ]
    return "\n".join(lines) + "\n"


def write_section(results: Path, text: str) -> None:
    """Put `text` in place of RESULTS.md's section between the `SECTION` markers, or at its end."""
    current = results.read_text(encoding="utf-8") if results.is_file() else ""
    if SECTION[0] in current and SECTION[1] in current:
        before, rest = current.split(SECTION[0], 1)
        after = rest.split(SECTION[1], 1)[1].lstrip("\n")
        current = before + text + ("\n" + after if after else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text
    results.write_text(current, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="N, as run.py takes it: the sample is its 4N")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sousa-url-read"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--baseline", help="another checkout of sousa-builder to measure the same way")
    parser.add_argument("--results", type=Path, help="put the figures in this RESULTS.md (its url_read.py section)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    facts = bench(args)
    print(json.dumps(facts, indent=1))
    print(table(facts))
    print(
        f"output: {facts['output_bytes'] / MB:,.0f} MB in {facts['shards']} shard(s), the largest "
        f"{facts['largest_shard'] / MB:,.0f} MB"
    )
    if args.results is not None:
        command = "python benchmarks/url_read.py " + " ".join(sys.argv[1:])
        write_section(args.results, section(facts, command))
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
