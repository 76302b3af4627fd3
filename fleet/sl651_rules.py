"""SL 651 stations' alarm rules at the fleet: the gateway's engine behind the centre's seam.

``rules_for`` gives the receiving centre (``fleet.sl651_centre``) each station's
``StationRules``: the rules file kept in the registry (``fleet sl651 add-station --rules``,
``set-rules``), parsed by ``fleet.sl651_rules_file``, run by ``alarm_engine`` exactly as
a gateway runs its site's rules (numba kernels when numba imports, else the pure-Python
reference, which they match bit for bit). A station without rules gets none.

This module must never decide a level itself (the engine does), never write to the
database (the registry stores the changes with the readings), and never let a stored
file that no longer parses go unsaid: it is logged at CRITICAL, since the station's
alarms are not evaluated until its rules are set again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence

from alarm_engine import AlarmEngine, LevelChange
from fleet.sl651_rules_file import StationRulesError, parse_station_rules
from fleet.sl651_stations import Observation, Station, StationRegistry
from fleet.station_alarms import RulesFor
from protocol import Quality
from site_schema.rule_specs import CombinationRule, RuleSpec, SampleRule

log = logging.getLogger(__name__)


class EngineRules:
    """One station's rules on the gateway's engine (``fleet.station_alarms.StationRules``).

    A reading counts as good when it has a value and no quality bit set; a "no value"
    (timeout) never raises or lowers a level, as at a gateway.
    """

    def __init__(self, rules: Sequence[RuleSpec], backend: str = "auto") -> None:
        self.engine = AlarmEngine(rules, backend, replay_threads=1)
        self._rules = {rule.id: rule for rule in rules}

    @property
    def history_s(self) -> float:
        """How far back the rules need readings: their longest window."""
        return self.engine.history_needed_s

    def replay(self, observations: Sequence[Observation]) -> None:
        """Bring the rules up to date with stored history (its changes are recorded)."""
        self._push(observations)

    def restore(self, levels: Mapping[str, int]) -> None:
        """Re-apply the open alarms' levels; a latching level latches again."""
        for rule_id, level in levels.items():
            rule = self._rules.get(rule_id)
            if rule is None:
                log.warning("an open alarm of rule %r, which the station no longer has", rule_id)
                continue
            self.engine.restore_level(rule_id, level)
            self.engine.restore_latch(rule_id, level)

    def evaluate(self, observations: Sequence[Observation]) -> list[LevelChange]:
        """The level changes the new observations cause, in order."""
        return self._push(observations)

    def levels(self) -> dict[str, int]:
        """Each rule's level now."""
        return self.engine.levels()

    def acknowledge(self, rule_id: str, t: float) -> list[LevelChange]:
        """Release a latch acknowledged at the fleet (nothing if none, or no such rule)."""
        if rule_id not in self._rules:
            return []
        return self.engine.acknowledge(rule_id, t)

    def _push(self, observations: Sequence[Observation]) -> list[LevelChange]:
        changes: list[LevelChange] = []
        for obs in observations:
            value = math.nan if obs.value is None else obs.value
            good = obs.value is not None and obs.quality == Quality.OK
            changes += self.engine.push(obs.channel, obs.ts, value, good)
        return changes


def station_rules(text: str, address: str, backend: str = "auto") -> EngineRules:
    """A station's rules from its kept rules file.

    Raises:
        StationRulesError: the file no longer parses (say, a shipped table it includes
            changed in an upgrade).
    """
    return EngineRules(parse_station_rules(text, f"station {address}'s rules"), backend)


def rules_for(registry: StationRegistry, backend: str = "auto") -> RulesFor:
    """The centre's ``rules_for``: each station's rules as the registry keeps them now."""

    def build(station: Station) -> EngineRules | None:
        text, _ = registry.rules_text(station.address)
        if text is None:
            return None
        try:
            return station_rules(text, station.address, backend)
        except StationRulesError:
            log.critical(
                "SL 651: station %s: its kept rules no longer parse, so its alarms are not "
                "evaluated; set them again (fleet sl651 set-rules)",
                station.address,
                exc_info=True,
            )
            raise

    return build


def check_kept_rules(registry: StationRegistry, backend: str = "auto") -> int:
    """Parse every station's kept rules and load the kernels they run on; how many have rules.

    Run once as the centre starts, so a file that no longer parses is said at once (at
    CRITICAL) rather than at the station's first report, and numba compiles (or loads
    from its cache) before any station waits on it for an acknowledgement.
    """
    kinds: dict[str, SampleRule] = {}
    count = 0
    for station, text in registry.stations_with_rules():
        count += 1
        try:
            rules = parse_station_rules(text, f"station {station.address}'s rules")
        except StationRulesError:
            log.critical(
                "SL 651: station %s: its kept rules no longer parse, so its alarms are not "
                "evaluated; set them again (fleet sl651 set-rules)",
                station.address,
                exc_info=True,
            )
            continue
        for rule in rules:
            if not isinstance(rule, CombinationRule):  # a combination runs on no kernel
                kinds.setdefault(rule.kind, dataclasses.replace(rule, id=f"warm_up_{rule.kind}"))
    if kinds:
        warm = EngineRules(list(kinds.values()), backend)
        for rule in kinds.values():
            warm.engine.push(rule.channel, 0.0, math.nan, False)
        log.info("SL 651: alarm kernels ready (%s): %s", warm.engine.backend, ", ".join(kinds))
    return count
