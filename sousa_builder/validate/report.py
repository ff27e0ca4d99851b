"""The result of `sousa-builder validate`: one `CheckResult` per check, gathered in a `Report`.

A check passes, fails, warns (fails only with `strict`), or is skipped because what it needs could
not be read (the check that could not read it has failed already, or an option such as `--source`
was not given).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")
# Offenders kept in a result (and in the JSON report), and how many a message or summary shows.
KEPT = 10
SHOWN = 5


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for a report."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def listing(offenders: Sequence[str], count: int, shown: int = SHOWN) -> str:
    """'a, b, c and 4 more', where `count` is the number of offenders, `offenders` only the first few."""
    head = ", ".join(offenders[:shown])
    more = count - min(shown, len(offenders))
    return f"{head} and {more:,} more" if more > 0 else head


@dataclass
class CheckResult:
    """One check: its status, a one-line message, how many items offend and the first of them."""

    name: str
    status: Status
    message: str
    count: int = 0
    offenders: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The message followed by the first offenders, as the summary prints it."""
        if not self.count:
            return self.message
        return f"{self.message}: {listing(self.offenders, self.count)}"


def verdict(
    name: str,
    count: int,
    offenders: Sequence[str],
    problem: str,
    ok: str,
    severity: Status = "fail",
    details: dict[str, Any] | None = None,
) -> CheckResult:
    """`ok` as a passing result when `count` is 0, else `severity` with '`count` `problem`' and the offenders."""
    if not count:
        return CheckResult(name, "pass", ok, details=details or {})
    return CheckResult(name, severity, f"{count:,} {problem}", count, list(offenders[:KEPT]), details or {})


def share_verdict(
    name: str,
    checked: int,
    offenders: Sequence[str],
    problem: str,
    ok: str,
    max_share: float,
    details: dict[str, Any] | None = None,
) -> CheckResult:
    """A check on many items that tolerates a few bad ones: `offenders` (one per flagged item, worst first)
    fail it when they are more than `max_share` of the `checked` items, else warn (`--strict` fails)."""
    flagged = len(offenders)
    if not flagged:
        return CheckResult(name, "pass", ok, details=details or {})
    share = flagged / max(1, checked)
    status: Status = "fail" if share > max_share else "warn"
    tolerated = f"the {max_share * 100:g}% tolerated"
    limit = f"more than {tolerated}" if status == "fail" else f"within {tolerated}; --strict fails on any"
    message = f"{flagged:,} of {checked:,} {problem} ({share:.1%}: {limit})"
    return CheckResult(name, status, message, flagged, list(offenders[:KEPT]), details or {})


def skipped(name: str, reason: str) -> CheckResult:
    """A check that did not run, and why."""
    return CheckResult(name, "skip", f"not run: {reason}")


@dataclass
class Report:
    """Every check run on one target (a SOUSA source directory or a prepared folder)."""

    target: str
    kind: Literal["source", "prepared"]
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    def __getitem__(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def with_status(self, *statuses: Status) -> list[CheckResult]:
        """The checks whose status is one of `statuses`, in report order."""
        return [check for check in self.checks if check.status in statuses]

    def refuse_if_failed(self, error: type[Exception], command: str) -> None:
        """Raise `error` naming every failed check, in one line, if any failed; `command` gives the full report."""
        failures = self.with_status("fail")
        if failures:
            reasons = "; ".join(f"{check.name}: {check.text}" for check in failures)
            summary = f"{self.target} fails validation, so nothing was published ({reasons})"
            raise error(f"{summary}; `{command}` gives the full report")

    def draws(self) -> list[tuple[int, int]]:
        """The random draws of samples the checks made (`--sample K`): (K, seed) for each distinct one, in order.

        Returns:
            `list[tuple[int, int]]`: empty when every sample was checked.
        """
        found = [(c.details["sample"], c.details["seed"]) for c in self.checks if c.details.get("sampled")]
        return list(dict.fromkeys(found))

    def ok(self, strict: bool = False) -> bool:
        """True when no check failed (and, with `strict`, none warned)."""
        return not self.with_status("fail", *(("warn",) if strict else ()))

    def to_dict(self, strict: bool = False) -> dict[str, Any]:
        """Everything in the report, plus the verdict under `strict`, as plain JSON-able data."""
        return {
            "target": self.target,
            "kind": self.kind,
            "ok": self.ok(strict),
            "strict": strict,
            "seconds": round(self.seconds, 3),
            "counts": {status: len(self.with_status(status)) for status in STATUSES},
            "checks": [asdict(check) for check in self.checks],
        }

    def to_json(self, strict: bool = False) -> str:
        """`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(strict), indent=2, default=str) + "\n"

    def summary(self, strict: bool = False) -> str:
        """One line a check, then the failures (and warnings) with their first offenders."""
        width = max((len(check.name) for check in self.checks), default=0)
        lines = [f"validate {self.kind} {self.target}: {len(self.checks)} checks in {self.seconds:.1f} s"]
        lines += [f"  {check.status.upper():<4}  {check.name:<{width}}  {check.message}" for check in self.checks]
        for title, status in (("failures", "fail"), ("warnings", "warn")):
            problems = self.with_status(status)
            if problems:
                lines.append(f"{title}:")
                lines += [f"  {check.name}: {check.text}" for check in problems]
        lines += [
            f"sampled with seed {seed}: --sample {k} --seed {seed} checks the same samples" for k, seed in self.draws()
        ]
        counts = ", ".join(f"{len(self.with_status(s))} {s}" for s in ("fail", "warn", "skip") if self.with_status(s))
        outcome = "OK" if self.ok(strict) else "FAILED"
        lines.append(f"{outcome}{' (strict)' if strict else ''}" + (f": {counts}" if counts else ""))
        return "\n".join(lines)
