"""The escalation policy as data: per alarm level, which tiers are called, in what order.

Each tier has an answer deadline; an unanswered call is repeated every ``repeat_s``. The
fleet's default (``DEFAULT_POLICY``) is overridden per site over REST. Parsing refuses a
policy that could leave a covered level without anyone to call; it never sends anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.roster import Tier
from protocol.levels import LEVEL_NAMES


class PolicyError(ValueError):
    """A policy document that cannot be used; the message names the place."""


@dataclass(frozen=True, slots=True)
class TierStep:
    """Call ``tier``; if nobody at or above the required tier answers in ``deadline_s``, go on."""

    tier: Tier
    deadline_s: float


@dataclass(frozen=True, slots=True)
class LevelPolicy:
    """How one alarm level is called: tiers in order, repeat interval, required tier."""

    steps: tuple[TierStep, ...]
    repeat_s: float
    required_tier: Tier

    def to_json(self) -> dict[str, Any]:
        """The policy as JSON (the same shape ``parse_policy`` reads)."""
        return {
            "tiers": [{"tier": s.tier.value, "deadline_s": s.deadline_s} for s in self.steps],
            "repeat_s": self.repeat_s,
            "required_tier": self.required_tier.value,
        }


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Level number (3 orange, 4 red) to how it is called; levels absent are not called."""

    levels: dict[int, LevelPolicy]

    def for_level(self, level: int) -> LevelPolicy | None:
        """The policy of ``level``, or None if that level calls nobody."""
        return self.levels.get(level)

    def to_json(self) -> dict[str, Any]:
        """The policy as JSON, levels by name."""
        return {"levels": {LEVEL_NAMES[n]: p.to_json() for n, p in sorted(self.levels.items())}}


DEFAULT_POLICY = EscalationPolicy(
    levels={
        4: LevelPolicy(
            (
                TierStep(Tier.VILLAGE, 300.0),
                TierStep(Tier.TOWNSHIP, 600.0),
                TierStep(Tier.COUNTY, 900.0),
            ),
            repeat_s=120.0,
            required_tier=Tier.VILLAGE,
        ),
        3: LevelPolicy(
            (TierStep(Tier.VILLAGE, 600.0), TierStep(Tier.TOWNSHIP, 900.0)),
            repeat_s=300.0,
            required_tier=Tier.VILLAGE,
        ),
    }
)


def _seconds(value: Any, where: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: a number of seconds"
        raise PolicyError(msg)
    if not low <= float(value) <= high:
        msg = f"{where}: between {low:g} and {high:g} s"
        raise PolicyError(msg)
    return float(value)


def _tier(value: Any, where: str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        msg = f"{where}: {value!r} is not one of {', '.join(t.value for t in Tier)}"
        raise PolicyError(msg) from None


def parse_level(document: Any, where: str) -> LevelPolicy:
    """One level's policy from JSON; raises PolicyError."""
    if not isinstance(document, dict):
        raise PolicyError(f"{where}: an object with tiers, repeat_s, required_tier")
    unknown = set(document) - {"tiers", "repeat_s", "required_tier"}
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    tiers = document.get("tiers")
    if not isinstance(tiers, list) or not tiers:
        raise PolicyError(f"{where}.tiers: a non-empty list of {{tier, deadline_s}}")
    steps: list[TierStep] = []
    for i, item in enumerate(tiers):
        at = f"{where}.tiers[{i}]"
        if not isinstance(item, dict) or set(item) != {"tier", "deadline_s"}:
            raise PolicyError(f"{at}: an object with exactly tier and deadline_s")
        tier = _tier(item["tier"], f"{at}.tier")
        if steps and tier.rank <= steps[-1].tier.rank:
            raise PolicyError(f"{at}.tier: tiers go up the chain (village, township, county)")
        steps.append(
            TierStep(tier, _seconds(item["deadline_s"], f"{at}.deadline_s", low=10, high=86400))
        )
    repeat = _seconds(document.get("repeat_s"), f"{where}.repeat_s", low=10, high=86400)
    required = _tier(document.get("required_tier", steps[0].tier.value), f"{where}.required_tier")
    if required.rank > steps[-1].tier.rank:
        raise PolicyError(f"{where}.required_tier: {required.value} is never called")
    return LevelPolicy(tuple(steps), repeat, required)


def parse_policy(document: Any) -> EscalationPolicy:
    """A whole policy ``{"levels": {"red": {...}, "orange": {...}}}``; raises PolicyError."""
    if not isinstance(document, dict) or set(document) != {"levels"}:
        raise PolicyError('policy: an object {"levels": {"red": {...}, ...}}')
    levels_doc = document["levels"]
    if not isinstance(levels_doc, dict):
        raise PolicyError("levels: an object keyed by level name (blue, yellow, orange, red)")
    levels: dict[int, LevelPolicy] = {}
    for name, level_doc in levels_doc.items():
        if name not in LEVEL_NAMES[1:]:
            raise PolicyError(f"levels.{name}: not one of blue, yellow, orange, red")
        levels[LEVEL_NAMES.index(name)] = parse_level(level_doc, f"levels.{name}")
    return EscalationPolicy(levels)
