"""The declared dependencies are what the package imports: none missing (fsspec was), none unused (pandas was)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import tomllib
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"yaml": "pyyaml"}
# Imported only when an extra is installed and asked for (`--engine ray`; s3fs is reached through fsspec).
OPTIONAL = {"ray"}


def imported_packages() -> set[str]:
    found = set()
    for path in (ROOT / "sousa_builder").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {DISTRIBUTIONS.get(name, name) for name in found - set(sys.stdlib_module_names) - {"sousa_builder"}}


def declared(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_dependencies_are_the_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert declared(project["dependencies"]) == imported_packages() - OPTIONAL


def test_every_dependency_has_its_pin_in_the_oldest_environment() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {}
    for line in (ROOT / "ci" / "oldest.txt").read_text(encoding="utf-8").splitlines():
        requirement = line.split("#")[0].strip()
        if requirement:
            name, version = requirement.split("==")
            pins[name.lower()] = version
    for requirement in project["dependencies"]:
        name = declared([requirement]).pop()
        lower = re.search(r">=([\w.]+)", requirement)
        pinned = pins.get(name)
        assert lower and pinned and Version(pinned) == Version(lower[1]), f"{requirement}: ci/oldest.txt pins {pinned}"
