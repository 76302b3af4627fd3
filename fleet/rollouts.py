"""Staged rollouts: waves, deadlines and thresholds as pure decisions, and their scheduler.

``next_step`` looks at one snapshot of a rollout at one instant and says what must happen:
devices past their deadline time out (a failure), a finished wave whose success rate
reaches the success threshold starts the next wave, a wave whose failure rate passes the
error threshold halts the rollout, even before the wave has finished. It reads no clock
and no storage. ``RolloutScheduler`` applies those decisions, signing each wave's document
with the fleet key; it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fleet.leases import Leadership
from fleet.repository import (
    DeviceState,
    DocumentIssuer,
    Repository,
    Rollout,
    RolloutDevice,
    RolloutState,
    RolloutStep,
)
from fleet.roster import Person
from fleet.village_roster import with_village_roster
from fleet.worker_threads import in_thread
from ota.document import Document, DocumentKind, Signer, Target, sign_document

log = logging.getLogger(__name__)

Clock = Callable[[], float]

_WAVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")
#: Attempts to apply a decision while reports keep moving the rollout underneath it.
_MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """How far a wave takes a rollout, cumulatively: ``count`` gateways or ``percent`` of all."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> WaveSpec:
        """``1`` (a count, e.g. the canary) or ``25%``; ValueError says what is wrong."""
        match = _WAVE.match(str(text))
        if match is None:
            msg = f"wave {text!r}: use a gateway count like 1 or a percentage like 25%"
            raise ValueError(msg)
        number, percent = float(match.group(1)), bool(match.group(2))
        if percent:
            if not 0 < number <= 100:
                msg = f"wave {text!r}: a percentage must be above 0 and at most 100"
                raise ValueError(msg)
            return cls(percent=number)
        if number != int(number) or number < 1:
            msg = f"wave {text!r}: a count must be a whole number of gateways, at least 1"
            raise ValueError(msg)
        return cls(count=int(number))

    def reach(self, total: int) -> int:
        """How many of ``total`` gateways have been sent the document once this wave starts."""
        if self.percent is not None:
            return min(total, math.ceil(total * self.percent / 100 - 1e-9))
        return min(total, self.count or 0)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


def plan_waves(
    gateways: Sequence[str], specs: Sequence[WaveSpec]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Split ``gateways`` (in order) into waves: ``(spec, gateways)`` each.

    Specs are cumulative ("after this wave, 25% have it"); a wave that adds nobody (25% of
    two gateways after a canary of one) is left out. The last wave must reach everyone.
    """
    if not gateways:
        msg = "a rollout needs at least one gateway"
        raise ValueError(msg)
    if len(set(gateways)) != len(gateways):
        msg = "a gateway is listed twice"
        raise ValueError(msg)
    if not specs:
        msg = "a rollout needs at least one wave, e.g. [1, '25%', '100%']"
        raise ValueError(msg)
    total = len(gateways)
    waves: list[tuple[str, tuple[str, ...]]] = []
    reached = 0
    for number, spec in enumerate(specs, 1):
        reach = spec.reach(total)
        if reach < reached:
            msg = (
                f"wave {number} ({spec} = {reach} gateways) is below the {reached} reached "
                "before it: waves are cumulative"
            )
            raise ValueError(msg)
        if reach > reached:
            waves.append((str(spec), tuple(gateways[reached:reach])))
            reached = reach
    if reached < total:
        msg = f"the waves reach {reached} of {total} gateways: make the last wave 100%"
        raise ValueError(msg)
    return tuple(waves)


@dataclass(frozen=True, slots=True)
class WaveTally:
    """Device outcomes of one wave."""

    size: int
    waiting: int = 0
    in_progress: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0

    @property
    def failures(self) -> int:
        """Failed and timed-out devices."""
        return self.failed + self.timed_out

    @property
    def complete(self) -> bool:
        """Every device of the wave has an outcome."""
        return self.waiting == 0 and self.in_progress == 0

    @property
    def success_rate(self) -> float:
        """Succeeded devices over the wave's size."""
        return self.succeeded / self.size if self.size else 0.0

    @property
    def failure_rate(self) -> float:
        """Failed and timed-out devices over the wave's size."""
        return self.failures / self.size if self.size else 0.0


def tally(states: Sequence[DeviceState]) -> WaveTally:
    """Count the device states of one wave."""
    counts = dict.fromkeys(DeviceState, 0)
    for state in states:
        counts[state] += 1
    return WaveTally(
        size=len(states),
        waiting=counts[DeviceState.WAITING],
        in_progress=counts[DeviceState.IN_PROGRESS],
        succeeded=counts[DeviceState.SUCCEEDED],
        failed=counts[DeviceState.FAILED],
        timed_out=counts[DeviceState.TIMED_OUT],
        cancelled=counts[DeviceState.CANCELLED],
    )


def verdict(rollout: Rollout, wave: WaveTally) -> Literal["in_progress", "succeeded", "failed"]:
    """A started wave's outcome under the rollout's thresholds.

    Failed as soon as its failure rate passes the error threshold, finished or not; once
    finished, succeeded when its success rate reaches the success threshold.
    """
    if wave.failure_rate > rollout.error_threshold:
        return "failed"
    if not wave.complete:
        return "in_progress"
    return "succeeded" if wave.success_rate >= rollout.success_threshold else "failed"


def wave_tallies(rollout: Rollout) -> list[WaveTally]:
    """The tally of every wave, in order."""
    states: list[list[DeviceState]] = [[] for _ in rollout.waves]
    for device in rollout.devices:
        states[device.wave].append(device.state)
    return [tally(s) for s in states]


def percent(rate: float) -> str:
    """``0.25`` as ``25%``, ``1/3`` as ``33.3%``."""
    return f"{rate * 100:.3g}%"


def _expired(device: RolloutDevice, now: float) -> bool:
    return (
        device.state is DeviceState.IN_PROGRESS
        and device.deadline is not None
        and device.deadline <= now
    )


def next_step(rollout: Rollout, now: float) -> RolloutStep | None:
    """What must happen to ``rollout`` at ``now``; None when nothing does.

    Deadlines run in every active state; a paused rollout starts no wave but still halts
    when a wave's failures pass the error threshold; a halted one only records timeouts.
    """
    if not rollout.state.active:
        return None
    timed_out = tuple(d.gateway_id for d in rollout.devices if _expired(d, now))
    state, reason, start = rollout.state, rollout.reason, None
    current = rollout.current_wave
    if state is RolloutState.RUNNING and current < 0:
        start = 0
    elif state in (RolloutState.RUNNING, RolloutState.PAUSED) and current >= 0:
        wave = tally(
            [
                DeviceState.TIMED_OUT if _expired(d, now) else d.state
                for d in rollout.devices
                if d.wave == current
            ]
        )
        number = current + 1
        outcome = verdict(rollout, wave)
        if wave.failure_rate > rollout.error_threshold:
            state = RolloutState.HALTED
            reason = (
                f"wave {number}: {wave.failures} of {wave.size} gateways failed "
                f"({percent(wave.failure_rate)} > error threshold "
                f"{percent(rollout.error_threshold)})"
            )
        elif outcome != "in_progress" and state is RolloutState.RUNNING:
            if outcome == "failed":
                state = RolloutState.HALTED
                reason = (
                    f"wave {number} ended with {wave.succeeded} of {wave.size} gateways "
                    f"updated ({percent(wave.success_rate)} < success threshold "
                    f"{percent(rollout.success_threshold)})"
                )
            elif number == len(rollout.waves):
                state = RolloutState.COMPLETED
                updated = sum(d.state is DeviceState.SUCCEEDED for d in rollout.devices)
                reason = (
                    f"{updated} of {len(rollout.devices)} gateways updated in "
                    f"{len(rollout.waves)} waves"
                )
            else:
                start = current + 1
    if not timed_out and start is None and state is rollout.state:
        return None
    return RolloutStep(rollout.id, rollout.revision, timed_out, start, state, reason)


def config_payload(site_toml: str, roster_of: Callable[[str], Sequence[Person]]) -> dict[str, Any]:
    """The payload of a signed configuration document: the village roster written in.

    Raises:
        VillageRosterError: the site file lists persons itself, or nobody can be texted.
    """
    return {"site_toml": with_village_roster(site_toml, roster_of)}


def document_issuer(
    kind: DocumentKind,
    payload: dict[str, Any],
    group: str | None,
    signer: Signer,
    issued_at: float,
) -> DocumentIssuer:
    """Signs ``payload`` as a ``kind`` document for the gateways storage hands it."""

    def issue(version: int, gateways: tuple[str, ...]) -> bytes:
        document = Document(kind, version, Target(gateways, group), issued_at, payload)
        return sign_document(document, signer)

    return issue


@dataclass(frozen=True, slots=True)
class RolloutTiming:
    """The scheduler's clock (deadlines and wave starts) and how often it looks."""

    clock: Clock = time.time
    tick_s: float = 1.0


class RolloutScheduler:
    """Moves active rollouts along, every ``tick_s``.

    Decisions are applied only to the snapshot they were taken on (the rollout's
    revision), so a report or a pause arriving meanwhile is never overwritten.
    """

    def __init__(
        self,
        repository: Repository,
        signer: Signer,
        timing: RolloutTiming | None = None,
        wake_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.repository = repository
        self.signer = signer
        self.timing = timing or RolloutTiming()
        self.wake_outbox = wake_outbox
        self._failing = False

    async def run(self) -> None:
        """Run until cancelled."""
        while True:
            await asyncio.sleep(self.timing.tick_s)
            try:
                await in_thread(self.tick)
            except Exception:
                level = logging.DEBUG if self._failing else logging.ERROR
                log.log(level, "could not move the rollouts along; will try again", exc_info=True)
                self._failing = True
            else:
                if self._failing:
                    log.warning("rollouts move again")
                self._failing = False

    def tick(self) -> None:
        """Take every active rollout as far as it can go now (blocking)."""
        for rollout_id in self.repository.ota.active_rollout_ids():
            self.advance(rollout_id)

    def advance(self, rollout_id: int) -> Rollout:
        """Apply every step due for one rollout now and return it (blocking)."""
        ota = self.repository.ota
        for _ in range(_MAX_ATTEMPTS):
            rollout = ota.get_rollout(rollout_id)
            now = self.timing.clock()
            step = next_step(rollout, now)
            if step is None:
                return rollout
            issue = self._issuer(rollout, now) if step.start_wave is not None else None
            if not ota.apply_rollout_step(step, now, issue):
                continue
            if step.state is not rollout.state:
                level = logging.WARNING if step.state is RolloutState.HALTED else logging.INFO
                log.log(level, "rollout %d %s: %s", rollout_id, step.state.value, step.reason)
            if step.start_wave is not None:
                log.info("rollout %d: wave %d started", rollout_id, step.start_wave + 1)
                if self.wake_outbox is not None:
                    self.wake_outbox()
        return ota.get_rollout(rollout_id)

    def _issuer(self, rollout: Rollout, now: float) -> DocumentIssuer:
        ota = self.repository.ota
        if rollout.kind is DocumentKind.RELEASE:
            assert rollout.release_version is not None
            payload = ota.get_release(rollout.release_version).manifest.payload()
        else:
            assert rollout.config_id is not None
            site_toml = ota.get_config(rollout.config_id).site_toml
            payload = config_payload(site_toml, self.repository.roster)
        return document_issuer(rollout.kind, payload, rollout.group, self.signer, now)


@contextlib.asynccontextmanager
async def running_scheduler(
    repository: Repository,
    signer: Signer,
    timing: RolloutTiming | None = None,
    wake_outbox: Callable[[], None] | None = None,
    leadership: Leadership | None = None,
) -> AsyncIterator[RolloutScheduler]:
    """A scheduler running in a task for the duration of the ``async with``.

    With ``leadership`` its loop runs only while this process holds the rollouts lease
    (``fleet.leases``); ``advance`` (REST's, on creating a rollout) works in every replica.
    """
    scheduler = RolloutScheduler(repository, signer, timing, wake_outbox)
    looping = leadership.run(scheduler.run) if leadership is not None else scheduler.run()
    task = asyncio.create_task(looping, name="fleet-rollouts")
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
