"""Docs that cannot rot: the command blocks of README.md, CONTRIBUTING.md and docs/*.md run as written.

Every fenced ```bash / ```python block carries a marker on the line before it:

    <!-- doc-test: run -->                    run it (flags after `run`, space separated)
    <!-- doc-test: run hub exit=1 -->
    <!-- doc-test: skip (why it cannot run here) -->

Flags: `slow` (the file's run is a slow test), `hub` (HF_TOKEN of the test Hub's user "user" is set), `s3` (moto's
S3 server with a bucket named "bucket"), `exit=N` (the exit code the block must end with), `datasets<4` /
`datasets>=4` (run only on those `datasets` versions). The runnable blocks of one file run in order, in one
temporary folder (their cwd), each a fresh `bash -e -o pipefail` or `python` of this environment (its bin folder
first on PATH, this worktree first on PYTHONPATH). Every block talks to the test Hub (tests/hub_server.py) at
HF_ENDPOINT; any other host name lookup fails, and fails the test. What the blocks leave in their folder must be
covered by .gitignore.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pytest
from hub_server import FakeHub

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
# Languages whose blocks are commands or code a reader copies: each needs a marker. Only bash and python run.
MARKED_LANGUAGES = {"bash", "sh", "shell", "console", "python", "py", "pycon"}
RUNNERS = {"bash": ["bash", "-e", "-o", "pipefail"], "python": [sys.executable]}
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<language>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<action>run|skip)\b(?P<rest>.*?)-->\s*$")
FLAG = re.compile(r"^(slow|hub|s3|exit=\d+|datasets<4|datasets>=4)$")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
HUB_USER, HUB_TOKEN = "user", "hf_user"
# Files of the checkout that the docs use by their path in it (a reader runs them from the checkout): copied into
# the blocks' folder first, and not counted as left behind.
FROM_CHECKOUT = ("sousa.py",)
BLOCK_TIMEOUT = 600
README_MAX_BYTES = 10_240  # the front page: what it is, install, a quickstart, links (issue 25)
DATASETS_MAJOR = int(datasets.__version__.split(".")[0])
# Run in every child process (as sitecustomize): a host name other than the loopback's is refused and written down.
NETWORK_GUARD = """
import os, socket
_real_getaddrinfo = socket.getaddrinfo
def _getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in ("127.0.0.1", "localhost", "::1"):
        with open(os.environ["SOUSA_DOC_TEST_BLOCKED"], "a") as log:
            log.write(name + "\\n")
        raise socket.gaierror(socket.EAI_NONAME, "doc test: no network access to " + name)
    return _real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = _getaddrinfo
"""


@dataclass
class Block:
    """One fenced block of a markdown file, with what its marker says."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    action: str | None = None  # "run", "skip", or None (no marker)
    flags: set[str] = field(default_factory=set)
    problem: str | None = None  # a malformed marker

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def expected_exit(self) -> int:
        return next((int(f.split("=")[1]) for f in self.flags if f.startswith("exit=")), 0)

    def runs_on_this_version(self) -> bool:
        if "datasets<4" in self.flags:
            return DATASETS_MAJOR < 4
        if "datasets>=4" in self.flags:
            return DATASETS_MAJOR >= 4
        return True


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of `path`, each with the marker on the line before its opening fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        indent, end = fence["indent"], index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]) + "\n"
        block = Block(path, index + 1, fence["language"].lower(), code)
        marker = MARKER.match(lines[index - 1]) if index > 0 else None
        if marker:
            block.action = marker["action"]
            rest = marker["rest"].strip()
            if block.action == "skip" and not re.fullmatch(r"\(.*\S.*\)", rest):
                block.problem = "a skip marker needs its reason in parentheses: <!-- doc-test: skip (why) -->"
            elif block.action == "run":
                unknown = [flag for flag in rest.split() if not FLAG.match(flag)]
                block.flags = set(rest.split())
                if unknown:
                    block.problem = f"unknown flag(s) {unknown} (known: slow hub s3 exit=N datasets<4 datasets>=4)"
                elif block.language not in RUNNERS:
                    block.problem = f"only {sorted(RUNNERS)} blocks can run, not {block.language or 'a plain'} block"
        blocks.append(block)
        index = end + 1
    return blocks


def runnable(path: Path) -> list[Block]:
    """The blocks of `path` marked to run (well-formed markers only), in the file's order."""
    return [block for block in parse_blocks(path) if block.action == "run" and not block.problem]


def test_the_docs_are_there_and_the_readme_stays_short() -> None:
    missing = [str(path.relative_to(ROOT)) for path in DOCS if not path.is_file()]
    assert not missing, f"missing: {missing}"
    for name in ("cli", "ci-validation", "audio-checks", "object-storage", "publishing", "safety"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), f"docs/{name}.md is missing"
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes: move details to a page of docs/, and link it"


def test_every_command_block_is_marked() -> None:
    wrong = []
    for path in DOCS:
        for block in parse_blocks(path):
            if block.problem:  # a malformed marker, on any block
                wrong.append(f"{block.where}: {block.problem}")
            elif block.action is None and block.language in MARKED_LANGUAGES:
                wrong.append(f"{block.where}: a ```{block.language} block without <!-- doc-test: run|skip (why) -->")
    assert not wrong, "\n".join(wrong)


def test_relative_links_point_to_files_and_headings_that_exist() -> None:
    broken = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in LINK.finditer(text):
            target, _, anchor = match["target"].partition("#")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # a URL
                continue
            file = (path.parent / target) if target else path
            if not file.exists():
                problem = "no such file"
            elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file):
                problem = f"no heading #{anchor} in {file.name}"
            else:
                continue
            line = text.count("\n", 0, match.start()) + 1
            broken.append(f"{path.relative_to(ROOT)}:{line}: {match['target']}: {problem}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of `path` (lowercase; punctuation but - and _ dropped; spaces: -)."""
    anchors, in_fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (heading := re.match(r"^#{1,6}\s+(.*?)\s*$", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-"))
    return anchors


def _file_params() -> list:
    params = []
    for path in DOCS:
        blocks = runnable(path) if path.is_file() else []
        if blocks:
            marks = [pytest.mark.slow] if any("slow" in block.flags for block in blocks) else []
            params.append(pytest.param(path, marks=marks, id=str(path.relative_to(ROOT))))
    return params


@pytest.mark.parametrize("path", _file_params())
def test_runnable_blocks_run_as_written(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    blocks = [block for block in runnable(path) if block.runs_on_this_version()]
    if not blocks:
        pytest.skip(f"no block of {path.name} runs on datasets {datasets.__version__}")
    cwd, scripts, guard = tmp_path / "cwd", tmp_path / "scripts", tmp_path / "guard"
    for folder in (cwd, scripts, guard):
        folder.mkdir()
    for name in FROM_CHECKOUT:
        shutil.copy(ROOT / name, cwd / name)
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD, encoding="utf-8")
    blocked = tmp_path / "blocked-hosts.txt"
    if any("s3" in block.flags for block in blocks):
        s3 = request.getfixturevalue("s3")
        if s3.fs.exists("bucket"):
            s3.fs.rm("bucket", recursive=True)  # what an earlier file's blocks left
        s3.fs.mkdir("bucket")
    # After the s3 fixture, which puts its endpoint and test credentials in os.environ.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("HF_", "HUGGING", "SOUSA_"))}
    env |= {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(guard), str(ROOT)]),
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "SOUSA_DOC_TEST_BLOCKED": str(blocked),
    }
    with FakeHub() as hub:
        hub.add_user(HUB_USER, token=HUB_TOKEN)
        env["HF_ENDPOINT"] = hub.url
        for number, block in enumerate(blocks):
            script = scripts / f"{number:02d}.{'py' if block.language == 'python' else 'sh'}"
            script.write_text(block.code, encoding="utf-8")
            block_env = env | ({"HF_TOKEN": HUB_TOKEN} if "hub" in block.flags else {})
            run = subprocess.run(
                [*RUNNERS[block.language], str(script)],
                cwd=cwd,
                env=block_env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            assert run.returncode == block.expected_exit, (
                f"{block.where}: exit {run.returncode}, expected {block.expected_exit}\n{block.code}\n"
                f"--- stdout\n{run.stdout[-3000:]}\n--- stderr\n{run.stderr[-3000:]}"
            )
            assert HUB_TOKEN not in run.stdout + run.stderr, f"{block.where}: the token was printed"
    # datasets asks the dataset viewer (datasets-server.<Hub host>) for a Hub repo's exported Parquet first; refused
    # (so it never leaves the machine), it reads the repo itself, as it does for a repo the viewer has not seen.
    viewer = "datasets-server.127.0.0.1"
    hosts = sorted(set(blocked.read_text().split()) - {viewer}) if blocked.exists() else []
    assert not hosts, f"{path.name}: blocks tried to reach {hosts} (only 127.0.0.1 is allowed)"
    left = _not_ignored(cwd)
    assert not left, f"{path.name}: blocks left {left}, which .gitignore does not cover"


def _not_ignored(folder: Path) -> list[str]:
    """The entries of `folder` (a top-level folder stands for its content) that .gitignore does not cover."""
    names = [entry.name + ("/" if entry.is_dir() else "") for entry in sorted(folder.iterdir())]
    if not names:
        return []
    check = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(names),
        capture_output=True,
        text=True,
    )
    ignored = set(check.stdout.split())
    return [name for name in names if name not in ignored and name not in FROM_CHECKOUT]
