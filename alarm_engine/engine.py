"""The alarm engine facade: samples in, level changes out, live and over history.

It routes samples to the rules of their channel, combines rule levels and words the
changes. It holds no I/O and never blocks on anything but computation; actions on a level
change (sirens, broadcasts, event log) belong to the caller.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from alarm_engine.backends import make_evaluators, resolve_backend
from alarm_engine.daemon_threads import map_on_daemon_threads
from alarm_engine.details import describe, named_values
from alarm_engine.level_change import LevelChange
from alarm_engine.model import (
    BoolArray,
    ChannelEvaluator,
    FloatArray,
    RawChange,
    RuleState,
)
from alarm_engine.standing_forecast import StandingForecast, standing_forecasts
from site_schema.rule_specs import (
    MAX_LEVEL,
    CombinationRule,
    FailureForecastRule,
    RuleSpec,
    SampleRule,
    history_needed_s,
    level_name,
)
from site_schema.rules import combination_order

Series = tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]
"""(times, values, good flags) of one channel."""
Batch = tuple[FloatArray, FloatArray, BoolArray]
"""A ``Series`` checked and made contiguous (``_prepare``), as the evaluators take it."""


class RuleCatchingUpError(Exception):
    """A rule whose replay was deferred cannot be acknowledged until it has caught up."""


def _non_finite(channel_id: str, index: int, t: float) -> str:
    return f"channel '{channel_id}': sample {index} has a non-finite time {t}"


def _before_previous(channel_id: str, t: float, last: float) -> str:
    return (
        f"channel '{channel_id}': sample 0 at t={t} is earlier than the previous sample at t={last}"
    )


class _Combination:
    """Level of a combination rule; follows its members at once, may latch."""

    def __init__(self, rule: CombinationRule) -> None:
        self.rule = rule
        self.level = 0
        self.latched = False

    def derived(self, levels: Mapping[str, int]) -> int:
        members = [levels[m] for m in self.rule.members]
        return min(members) if self.rule.kind == "all_of" else max(members)

    def detail(self, levels: Mapping[str, int]) -> str:
        members = ", ".join(f"{m}={level_name(levels[m])}" for m in self.rule.members)
        return f"{self.rule.kind}({members})"


@dataclass
class _CatchUp:
    """Failure-forecast rules whose replay was left for ``catch_up``, and what waits for it.

    ``queued`` holds the live batches of their channels in arrival order; ``restores`` the
    ``restore_latch`` and ``restore_level`` calls made meanwhile; ``shown`` the levels the
    rules show until they are caught up (what was restored, never a level mid-replay).
    """

    work: list[tuple[str, ChannelEvaluator, Batch]]
    rules: frozenset[str]
    evaluators: frozenset[int]
    shown: dict[str, int]
    queued: list[tuple[str, Batch]] = field(default_factory=list)
    restores: list[tuple[str, str, int]] = field(default_factory=list)
    done: bool = False


class AlarmEngine:
    """Evaluates alarm rules on samples and reports level changes.

    Semantics (identical in every backend):

    - a good sample whose metric meets a higher level's threshold raises the level at once;
    - a level falls only after the metric has stayed below (threshold - hysteresis) for
      ``hold_s`` of sample time, to the level the metric then supports with hysteresis;
    - a sample with ``good=False`` or a non-finite value (NaN, inf) never raises or lowers
      a level and is no evidence for a fall: the hold counts only intervals between
      consecutive good evaluations that were both below with no bad sample between them
      (a bad sample pauses the count, an evaluation at or above the threshold resets it;
      a gap without samples counts, as the next sample shows the metric still below);
    - levels at or above ``latch_from`` latch until ``acknowledge``;
    - within a channel, timestamps must not decrease; equal timestamps are accepted and
      processed in arrival order (a repeated reading is just another sample);
    - channels without rules are ignored.
    """

    def __init__(
        self,
        rules: Sequence[RuleSpec],
        backend: str = "auto",
        *,
        replay_threads: int | None = None,
    ) -> None:
        """Build evaluators for ``rules`` in ``backend`` ("auto", "numba" or "reference").

        ``replay_threads`` bounds the threads ``replay`` uses with numba (default: one per
        CPU); the reference holds the GIL, so it always replays in the calling thread.

        Raises:
            ValueError: for duplicate ids, a combination naming an unknown rule or forming
                a cycle, or an unavailable backend.
        """
        ids = [rule.id for rule in rules]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            msg = f"duplicate rule id(s): {', '.join(duplicates)}"
            raise ValueError(msg)
        self.backend = resolve_backend(backend)
        self._threads = 1
        if self.backend == "numba":
            self._threads = max(1, replay_threads or os.cpu_count() or 1)
        self._rules: dict[str, RuleSpec] = {rule.id: rule for rule in rules}
        self._combinations = [_Combination(c) for c in combination_order(tuple(rules))]
        self._by_combination = {c.rule.id: c for c in self._combinations}
        self._sample_rules: dict[str, SampleRule] = {}
        self._by_channel: dict[str, list[SampleRule]] = {}
        for rule in rules:
            if not isinstance(rule, CombinationRule):
                self._sample_rules[rule.id] = rule
                self._by_channel.setdefault(rule.channel, []).append(rule)
        self._order = {rule.id: n for n, rule in enumerate(rules)}
        self._channel_evaluators: dict[str, list[ChannelEvaluator]] = {}
        self._states: dict[str, RuleState] = {}
        for channel, channel_rules in self._by_channel.items():
            self._channel_evaluators[channel] = make_evaluators(channel_rules, self.backend)
            for evaluator in self._channel_evaluators[channel]:
                self._states.update(evaluator.states)
        self._last_t: dict[str, float] = {}
        self._forecast_rules = [r.id for r in rules if isinstance(r, FailureForecastRule)]
        self._catching_up: _CatchUp | None = None
        self.history_needed_s: float = max((history_needed_s(r) for r in rules), default=0.0)

    def rules_for(self, channel_id: str) -> tuple[SampleRule, ...]:
        """Rules evaluated on ``channel_id``, in configuration order."""
        return tuple(self._by_channel.get(channel_id, ()))

    def levels(self) -> dict[str, int]:
        """Current level of every rule, combinations included."""
        return {rule_id: self._level(rule_id) for rule_id in self._rules}

    def metrics(self) -> dict[str, dict[str, float]]:
        """Latest metric values per rule (window sums, EAR, velocity, lead time ...)."""
        out: dict[str, dict[str, float]] = {}
        for rule_id, rule in self._rules.items():
            if isinstance(rule, CombinationRule):
                out[rule_id] = {"level": float(self._by_combination[rule_id].level)}
            elif self.catching_up(rule_id):  # its state is being rebuilt on another thread
                out[rule_id] = named_values(rule, (math.nan,) * len(self._states[rule_id].values))
            else:
                out[rule_id] = named_values(rule, self._states[rule_id].values)
        return out

    def standing_forecasts(self) -> dict[str, StandingForecast]:
        """The newest accepted forecast of each raised failure-forecast rule.

        Only rules above normal are given: a forecast is news while the level it supports
        stands. A rule none of whose forecasts passed yet is left out.
        """
        rules = [r for r in self._forecast_rules if not self.catching_up(r)]
        return standing_forecasts(self._states, rules)

    def push(self, channel_id: str, t: float, value: float, good: bool) -> list[LevelChange]:
        """Evaluate one live sample; return the level changes it causes, in order.

        Raises:
            ValueError: naming the channel, for a non-finite time or one earlier than the
                channel's previous sample; nothing is evaluated then.
        """
        if channel_id not in self._by_channel:
            return []
        # Scalar checks: this is the hot live path, ``_prepare`` is for arrays.
        if not math.isfinite(t):
            raise ValueError(_non_finite(channel_id, 0, t))
        last = self._last_t.get(channel_id, -math.inf)
        if t < last:
            raise ValueError(_before_previous(channel_id, t, last))
        batch = (
            np.array([t], dtype=np.float64),
            np.array([value], dtype=np.float64),
            np.array([good], dtype=np.bool_),
        )
        return self._run(channel_id, batch)

    def push_many(
        self, channel_id: str, t: npt.ArrayLike, value: npt.ArrayLike, good: npt.ArrayLike
    ) -> list[LevelChange]:
        """Evaluate a batch of one channel's samples with the same kernels as ``push``.

        Raises:
            ValueError: naming the channel and index, for decreasing or non-finite times or
                arrays of different lengths; nothing is evaluated then.
        """
        if channel_id not in self._by_channel:
            return []
        batch = self._prepare(channel_id, (t, value, good))
        if not len(batch[0]):
            return []
        return self._run(channel_id, batch)

    def replay(
        self, series: Mapping[str, Series], *, defer_forecasts: bool = False
    ) -> list[LevelChange]:
        """Evaluate histories of several channels as if pushed in time order across channels.

        Channels are independent until combined, so each channel's rules run over its whole
        history at once (in parallel threads with numba, which releases the GIL); the
        changes are then merged by time (ties: channel order in ``series``, then sample
        order, then rule order) and combinations follow them in that order.

        With ``defer_forecasts`` the failure-forecast rules' replay (minutes without numba)
        is left for ``catch_up``, which may run on another thread while live samples are
        pushed: until ``finish_catch_up`` those rules show the level restored for them and
        no metrics, and their live samples wait (see ``catching_up``).

        Raises:
            ValueError: as ``push_many``, for any channel; nothing is evaluated then.
        """
        batches = {ch: self._prepare(ch, s) for ch, s in series.items() if ch in self._by_channel}
        batches = {ch: b for ch, b in batches.items() if len(b[0])}
        tasks = [(ch, ev) for ch in batches for ev in self._channel_evaluators[ch]]
        if defer_forecasts:
            tasks = self._defer_forecasts(tasks, batches)
        results = map_on_daemon_threads(
            lambda task: self._process(task[1], batches[task[0]]), tasks, self._threads
        )
        order = {ch: n for n, ch in enumerate(batches)}
        merged: list[tuple[float, int, int, int, SampleRule, RawChange]] = []
        for (channel, _), changes in zip(tasks, results, strict=True):
            times = batches[channel][0]
            for index, rule_order, rule, change in changes:
                key = (float(times[index]), order[channel], index, rule_order)
                merged.append((*key, rule, change))
        merged.sort(key=lambda item: item[:4])
        for channel, batch in batches.items():
            self._last_t[channel] = float(batch[0][-1])
        return self._emit([(item[0], item[4], item[5]) for item in merged])

    def acknowledge(self, rule_id: str, t: float) -> list[LevelChange]:
        """Acknowledge a latched rule at time ``t``.

        The latch is released; if the latest metric is already below the level's threshold
        (minus hysteresis) the level falls at once, without waiting for the hold, to the
        level that metric supports; otherwise it stays and follows the metric from then on
        (a later rise to a latching level latches again). A combination falls at once to
        the level of its members. Returns the "ack" change (``old == new`` when the level
        stays) followed by the changes of combinations it causes; empty when the rule was
        not latched.

        Raises:
            KeyError: for an unknown rule id.
        """
        rule = self._rule(rule_id)
        if isinstance(rule, CombinationRule):
            combination = self._by_combination[rule_id]
            if not combination.latched:
                return []
            combination.latched = False
            levels = self.levels()
            old, combination.level = combination.level, combination.derived(levels)
            change = LevelChange(
                rule_id,
                t,
                old,
                combination.level,
                "ack",
                float(combination.level),
                f"acknowledged {level_name(old)}; {combination.detail(levels)}",
            )
            levels[rule_id] = combination.level
            return [change, *self._follow_combinations(t, levels)]
        if self.catching_up(rule_id):
            msg = f"rule '{rule_id}' is still rebuilding its state from the stored readings"
            raise RuleCatchingUpError(msg)
        raw = self._states[rule_id].acknowledge()
        if raw is None:
            return []
        return [describe(rule, raw, t, "ack"), *self._follow_combinations(t, self.levels())]

    def restore_latch(self, rule_id: str, level: int) -> None:
        """After a restart (and the replay of history), re-apply a latched level.

        The rule's level becomes the higher of its current level and ``level`` and stays
        latched until acknowledged; the hold evidence restarts. Combinations follow. No
        change is reported: the caller reads ``levels()`` to drive its outputs. A level the
        rule does not latch at (below ``latch_from``, or the configuration changed since
        the event was logged) is ignored, so a stale event log cannot stop a restart.

        Raises:
            KeyError: for an unknown rule id.
            ValueError: for a level outside 0..4.
        """
        rule = self._rule(rule_id)
        if not 0 <= level <= MAX_LEVEL:
            msg = f"rule '{rule_id}': level {level} is outside 0..{MAX_LEVEL}"
            raise ValueError(msg)
        if not rule.latch_from or level < rule.latch_from:
            return
        if isinstance(rule, CombinationRule):
            combination = self._by_combination[rule_id]
            combination.level = max(combination.level, level)
            combination.latched = True
        elif (waiting := self._catching_up) is not None and rule_id in waiting.rules:
            waiting.restores.append(("latch", rule_id, level))
            waiting.shown[rule_id] = max(waiting.shown[rule_id], level)
        else:
            self._states[rule_id].restore_latch(level)
        self._follow_combinations(math.nan, self.levels())

    def restore_level(self, rule_id: str, level: int) -> None:
        """After a restart (and the replay of history), re-apply the level last recorded.

        Readings of the last moments before a crash may be lost while the alarm event they
        raised was stored; the replay then comes out lower than the level the siren was
        sounding at. The rule's level becomes the higher of the two and falls only as any
        level falls: after the hold time below threshold, counted from the next sample.
        Combinations follow their inputs. No change is reported (see ``restore_latch``).

        Raises:
            KeyError: for an unknown rule id.
            ValueError: for a level outside 0..4.
        """
        rule = self._rule(rule_id)
        if not 0 <= level <= MAX_LEVEL:
            msg = f"rule '{rule_id}': level {level} is outside 0..{MAX_LEVEL}"
            raise ValueError(msg)
        if isinstance(rule, CombinationRule):
            return
        if (waiting := self._catching_up) is not None and rule_id in waiting.rules:
            waiting.restores.append(("level", rule_id, level))
            waiting.shown[rule_id] = max(waiting.shown[rule_id], level)
        else:
            self._states[rule_id].restore_level(level)
        self._follow_combinations(math.nan, self.levels())

    def _rule(self, rule_id: str) -> RuleSpec:
        try:
            return self._rules[rule_id]
        except KeyError:
            msg = f"unknown rule '{rule_id}'"
            raise KeyError(msg) from None

    def _level(self, rule_id: str) -> int:
        if rule_id in self._by_combination:
            return self._by_combination[rule_id].level
        if (waiting := self._catching_up) is not None and rule_id in waiting.rules:
            return waiting.shown[rule_id]
        return self._states[rule_id].level

    # --- a forecast's replay left for later (``replay(defer_forecasts=True)``) ---------------

    def catching_up(self, rule_id: str | None = None) -> bool:
        """Whether ``rule_id`` (any rule, when None) waits for ``finish_catch_up``."""
        waiting = self._catching_up
        return waiting is not None and (rule_id is None or rule_id in waiting.rules)

    def catch_up(self) -> int:
        """Replay the deferred forecast rules' history; returns how many changes it made.

        May run on another thread while ``push`` runs on the caller's: it touches only the
        deferred rules' own evaluators, whose samples ``push`` queues meanwhile. The
        history's changes are not reported: as with the restart's other rules, the levels
        come from them and from ``restore_latch`` and ``restore_level``.
        """
        waiting = self._catching_up
        if waiting is None or waiting.done:
            return 0
        changes = sum(len(self._process(e, batch)) for _, e, batch in waiting.work)
        waiting.done = True
        return changes

    def finish_catch_up(self) -> list[LevelChange]:
        """After ``catch_up``: apply the restores, then the queued live samples, in order.

        Returns the queued samples' level changes, as ``push`` would have. The deferred
        rules show their own levels from now on; the caller re-asserts its outputs, since a
        replayed level above the restored one is adopted without a change (as at start).

        Raises:
            RuntimeError: when ``catch_up`` has not finished.
        """
        waiting = self._catching_up
        if waiting is None:
            return []
        if not waiting.done:
            msg = "finish_catch_up before catch_up finished"
            raise RuntimeError(msg)
        self._catching_up = None
        for kind, rule_id, level in waiting.restores:
            if kind == "latch":
                self._states[rule_id].restore_latch(level)
            else:
                self._states[rule_id].restore_level(level)
        self._follow_combinations(math.nan, self.levels())
        out: list[LevelChange] = []
        for channel_id, batch in waiting.queued:
            raw = [
                change
                for evaluator in self._channel_evaluators[channel_id]
                if id(evaluator) in waiting.evaluators
                for change in self._process(evaluator, batch)
            ]
            raw.sort(key=lambda item: (item[0], item[1]))
            out += self._emit([(float(batch[0][i]), rule, c) for i, _, rule, c in raw])
        return out

    def _defer_forecasts(
        self, tasks: list[tuple[str, ChannelEvaluator]], batches: Mapping[str, Batch]
    ) -> list[tuple[str, ChannelEvaluator]]:
        """Set aside the forecast rules' evaluators of ``tasks``; return the rest."""
        forecast = set(self._forecast_rules)
        deferred = [(ch, e) for ch, e in tasks if forecast & set(e.states)]
        if not deferred:
            return tasks
        rules = frozenset(r for _, e in deferred for r in e.states)
        self._catching_up = _CatchUp(
            work=[(ch, e, batches[ch]) for ch, e in deferred],
            rules=rules,
            evaluators=frozenset(id(e) for _, e in deferred),
            shown={r: self._states[r].level for r in rules},
        )
        return [(ch, e) for ch, e in tasks if (ch, e) not in deferred]

    def _prepare(self, channel_id: str, series: Series) -> tuple[FloatArray, FloatArray, BoolArray]:
        t = np.ascontiguousarray(series[0], dtype=np.float64)
        v = np.ascontiguousarray(series[1], dtype=np.float64)
        good = np.ascontiguousarray(series[2], dtype=np.bool_)
        if t.ndim != 1 or t.shape != v.shape or t.shape != good.shape:
            msg = (
                f"channel '{channel_id}': times, values and good flags must be 1-D arrays "
                f"of one length, got shapes {t.shape}, {v.shape}, {good.shape}"
            )
            raise ValueError(msg)
        if not len(t):
            return t, v, good
        if not np.isfinite(t).all():
            index = int(np.argmin(np.isfinite(t)))
            raise ValueError(_non_finite(channel_id, index, float(t[index])))
        last = self._last_t.get(channel_id, -math.inf)
        if t[0] < last:
            raise ValueError(_before_previous(channel_id, float(t[0]), last))
        steps = np.diff(t) < 0
        if steps.any():
            index = int(np.argmax(steps)) + 1
            msg = (
                f"channel '{channel_id}': timestamps not sorted: sample {index} at "
                f"t={t[index]} is earlier than sample {index - 1} at t={t[index - 1]}"
            )
            raise ValueError(msg)
        return t, v, good

    def _process(
        self, evaluator: ChannelEvaluator, batch: tuple[FloatArray, FloatArray, BoolArray]
    ) -> list[tuple[int, int, SampleRule, RawChange]]:
        """Run one evaluator; key its changes by (sample, rule configuration order)."""
        out: list[tuple[int, int, SampleRule, RawChange]] = []
        for rule_id, change in evaluator.process(*batch):
            rule = self._sample_rules[rule_id]
            out.append((change.sample, self._order[rule_id], rule, change))
        return out

    def _run(
        self, channel_id: str, batch: tuple[FloatArray, FloatArray, BoolArray]
    ) -> list[LevelChange]:
        """Evaluate a validated, non-empty batch of one channel."""
        evaluators = self._channel_evaluators[channel_id]
        if (waiting := self._catching_up) is not None:
            if any(id(e) in waiting.evaluators for e in evaluators):
                waiting.queued.append((channel_id, batch))
            evaluators = [e for e in evaluators if id(e) not in waiting.evaluators]
        raw = [change for evaluator in evaluators for change in self._process(evaluator, batch)]
        raw.sort(key=lambda item: (item[0], item[1]))
        self._last_t[channel_id] = float(batch[0][-1])
        return self._emit([(float(batch[0][i]), rule, change) for i, _, rule, change in raw])

    def _emit(self, changes: list[tuple[float, SampleRule, RawChange]]) -> list[LevelChange]:
        """Word time-ordered rule changes and let combinations follow each in turn.

        The evaluators have already run over the whole batch, so the member levels are
        rewound to where they stood before it and replayed change by change: combinations
        see the member levels of each moment.
        """
        if not changes:
            return []
        levels = self.levels()
        for _, rule, raw in reversed(changes):
            levels[rule.id] = raw.old
        out: list[LevelChange] = []
        for t, rule, raw in changes:
            out.append(describe(rule, raw, t, "rise" if raw.new > raw.old else "fall"))
            levels[rule.id] = raw.new
            out.extend(self._follow_combinations(t, levels))
        return out

    def _follow_combinations(self, t: float, levels: dict[str, int]) -> list[LevelChange]:
        """Bring every combination up to date with the member ``levels``, members first."""
        out: list[LevelChange] = []
        for combination in self._combinations:
            derived = combination.derived(levels)
            old = combination.level
            latch_from = combination.rule.latch_from
            if derived > old:
                combination.level = derived
                if latch_from and derived >= latch_from:
                    combination.latched = True
                kind: Literal["rise", "fall"] = "rise"
            elif derived < old and not combination.latched:
                combination.level = derived
                kind = "fall"
            else:
                continue
            levels[combination.rule.id] = combination.level
            detail = f"{combination.detail(levels)} -> {level_name(combination.level)}"
            out.append(
                LevelChange(
                    combination.rule.id, t, old, combination.level, kind, float(derived), detail
                )
            )
        return out
