"""The rudiments the sample plays: each a sticking pattern of strokes (hand, accent, grace, diddle), at the
positions the PAS sheet gives them within one cycle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stroke:
    """One stroke of a rudiment pattern, for a right-handed player."""

    beat: float
    hand: str
    kind: str = "tap"
    accent: bool = False
    diddle_position: int | None = None
    buzz: bool = False
    flam: bool = False  # preceded by a grace note from the other hand


@dataclass(frozen=True)
class Rudiment:
    """A rudiment of the sample: its slug, the beats of one cycle, and the strokes of a cycle."""

    slug: str
    beats_per_cycle: int
    pattern: tuple[Stroke, ...]

    @property
    def has_flams(self) -> bool:
        """Whether a stroke of the pattern is a flam (a grace note first)."""
        return any(s.flam for s in self.pattern)

    @property
    def has_diddles(self) -> bool:
        """Whether the pattern holds diddles (two strokes by one hand)."""
        return any(s.diddle_position is not None for s in self.pattern)

    @property
    def is_roll(self) -> bool:
        """Whether the rudiment is a roll (by its slug)."""
        return "roll" in self.slug


def _diddles(hands: str, step: float) -> tuple[Stroke, ...]:
    return tuple(Stroke(i * step, h, "diddle", diddle_position=i % 2) for i, h in enumerate(hands))


RUDIMENTS = (
    Rudiment("single_stroke_roll", 2, tuple(Stroke(i * 0.5, "RL"[i % 2]) for i in range(4))),
    Rudiment("double_stroke_open_roll", 2, _diddles("RRLLRRLL", 0.25)),
    Rudiment(
        "single_paradiddle",
        2,
        tuple(
            Stroke(
                i * 0.25,
                h,
                "accent" if i % 4 == 0 else ("diddle" if i % 4 >= 2 else "tap"),
                accent=i % 4 == 0,
                diddle_position=(i % 4 - 2) if i % 4 >= 2 else None,
            )
            for i, h in enumerate("RLRRLRLL")
        ),
    ),
    Rudiment(
        "flam",
        2,
        (Stroke(0.0, "R", "accent", accent=True, flam=True), Stroke(1.0, "L", "accent", accent=True, flam=True)),
    ),
    Rudiment("multiple_bounce_roll", 1, tuple(Stroke(i * 0.5, "RL"[i % 2], "buzz", buzz=True) for i in range(2))),
    Rudiment(
        "single_stroke_four",
        2,
        tuple(
            Stroke(b, h, "accent" if i == 3 else "tap", accent=i == 3)
            for i, (b, h) in enumerate(zip((0, 1 / 3, 2 / 3, 1), "RLRL"))
        ),
    ),
)
