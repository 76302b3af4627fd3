"""The poller: reads every configured device on its own schedule and yields readings.

Each device runs its own loop on the injectable clock; all devices on a bus share that
bus's single owner. Failures become quality flags and counters on the readings. Nothing a
device does (silence, garbage, exception answers) can stop the loop or stall another
device by more than its own timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drivers.bus import ModbusBus, TransactionError
from drivers.bus_config import BusConfig
from drivers.clock import Clock
from drivers.codec import decode
from drivers.device_config import DeviceConfig
from drivers.model import Quality, Reading
from drivers.plan import ReadBlock, plan_profile
from drivers.plausibility import PlausibilityCheck
from drivers.profiles import ChannelSpec

log = logging.getLogger(__name__)

ReadingSink = Callable[[list[Reading]], None]


@dataclass
class ExceptionAnswers:
    """One kind of exception answer a device gave: what, to which request, how often."""

    detail: str
    hint: str | None
    channels: tuple[str, ...]
    count: int = 0
    first: float = 0.0
    last: float = 0.0


@dataclass
class DeviceHealth:
    """What the poller knows about one device, for status displays and health reports.

    ``exceptions`` keeps each distinct exception answer (code and request) with its count:
    a device that answers one block with an exception still answers, so these never make
    it "failing", but a technician must see them.
    """

    consecutive_failures: int = 0
    polls: int = 0
    last_poll: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    faults: Counter[str] = field(default_factory=Counter)
    exceptions: dict[str, ExceptionAnswers] = field(default_factory=dict)


def _bits_that_stop_a_cycle() -> Quality:
    # A silent device will be silent for its other blocks too; asking again within the
    # same cycle would only hold the bus for more timeouts.
    return Quality.TIMEOUT | Quality.CRC_ERROR | Quality.NO_CONNECTION


class DevicePoller:
    """Polls one device: plans its reads once, then reads, decodes and judges samples."""

    def __init__(self, config: DeviceConfig, bus: ModbusBus, clock: Clock) -> None:
        self.config = config
        self.bus = bus
        self.clock = clock
        self.blocks: list[ReadBlock] = plan_profile(config.profile, config.channels)
        self.health = DeviceHealth()
        self._checks = {
            ch.name: PlausibilityCheck(ch) for block in self.blocks for ch in block.channels
        }

    def next_interval(self) -> float:
        """Return the wait before the next poll: the interval, stretched while failing."""
        interval = self.config.poll_interval_s
        failures = self.health.consecutive_failures
        if failures == 0:
            return interval
        ceiling = max(self.config.backoff_max_s, interval)
        return float(min(interval * 2 ** (failures - 1), ceiling))

    async def poll_once(self) -> list[Reading]:
        """Read every block once and return one reading per channel, good or flagged."""
        readings: list[Reading] = []
        cycle_failed: TransactionError | None = None
        any_success = False
        for block in self.blocks:
            if cycle_failed is not None:
                readings.extend(self._failed(block, cycle_failed))
                continue
            try:
                data = await self._read(block)
            except TransactionError as failure:
                readings.extend(self._failed(block, failure))
                if failure.quality & _bits_that_stop_a_cycle():
                    cycle_failed = failure
                continue
            any_success = True
            readings.extend(self._decode(block, data, self.clock.now()))
        self._account(any_success, cycle_failed)
        return readings

    async def _read(self, block: ReadBlock) -> list[int] | list[bool]:
        # While a device is failing, one attempt per cycle is enough: retries would only
        # keep the bus busy for a device that is probably gone.
        attempts = 1 if self.health.consecutive_failures else self.config.retries + 1
        last: TransactionError | None = None
        for _ in range(attempts):
            try:
                return await self.bus.read(
                    self.config.unit_id,
                    block.table,
                    block.address,
                    block.count,
                    self.config.timeout_s,
                )
            except TransactionError as failure:
                last = failure
                if failure.quality == Quality.EXCEPTION:
                    break
        assert last is not None
        raise last

    def _decode(self, block: ReadBlock, data: list[int] | list[bool], t: float) -> list[Reading]:
        out: list[Reading] = []
        for ch in block.channels:
            start = ch.address - block.address
            raw = decode(
                [int(x) for x in data[start : start + ch.width]],
                ch.dtype,
                ch.word_order,
                ch.byte_order,
            )
            value = ch.to_engineering(raw)
            quality = self._checks[ch.name].assess(t, value)
            if quality:
                self.health.faults[quality.names()[0]] += 1
            out.append(self._reading(ch, t, value, quality))
        return out

    def _failed(self, block: ReadBlock, failure: TransactionError) -> list[Reading]:
        t = self.clock.now()
        self.health.faults[failure.quality.names()[0]] += len(block.channels)
        if failure.exception_code is not None:
            self._note_exception(block, failure, t)
        return [self._reading(ch, t, math.nan, failure.quality) for ch in block.channels]

    def _note_exception(self, block: ReadBlock, failure: TransactionError, t: float) -> None:
        """Log an exception answer the first time this device gives it, then count it."""
        seen = self.health.exceptions.get(failure.detail)
        if seen is None:
            names = tuple(ch.name for ch in block.channels)
            seen = ExceptionAnswers(failure.detail, failure.hint, names, first=t)
            self.health.exceptions[failure.detail] = seen
            hint = f"; hint: {seen.hint}" if seen.hint else ""
            log.warning(
                "device %s (unit %d) answered %s, so %s read(s) as exception; counted from "
                "now on without a log line%s",
                self.config.name,
                self.config.unit_id,
                failure.detail,
                ", ".join(names),
                hint,
            )
        seen.count += 1
        seen.last = t

    def _reading(self, ch: ChannelSpec, t: float, value: float, quality: Quality) -> Reading:
        return Reading(t, self.config.channel_id(ch.name), value, ch.unit, quality)

    def _account(self, any_success: bool, failure: TransactionError | None) -> None:
        now = self.clock.now()
        self.health.polls += 1
        self.health.last_poll = now
        name = self.config.name
        if failure is None or any_success:
            if self.health.consecutive_failures:
                log.info("device %s answers again", name)
            self.health.consecutive_failures = 0
            self.health.last_success = now
            self.health.last_error = None
            return
        self.health.consecutive_failures += 1
        self.health.last_error = failure.detail
        # The first failure is worth an ERROR; a device dead for a week must not flood the
        # log. An exception answer was logged already, once, by _note_exception.
        first = self.health.consecutive_failures == 1 and failure.exception_code is None
        level = logging.ERROR if first else logging.DEBUG
        log.log(level, "device %s (unit %d): %s", name, self.config.unit_id, failure.detail)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed.

    pymodbus waits for answers with ``asyncio.wait_for``, which on Python 3.11 can swallow
    a cancel that arrives together with the answer; a stopping agent would then poll on.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Poller:
    """All devices of a site, each polled on its own schedule over its bus's owner."""

    def __init__(
        self,
        buses: Sequence[BusConfig],
        devices: Sequence[DeviceConfig],
        clock: Clock,
        sink: ReadingSink | None = None,
    ) -> None:
        self.clock = clock
        self.buses = {b.name: ModbusBus(b) for b in buses}
        self.devices = [DevicePoller(d, self.buses[d.bus], clock) for d in devices]
        self.latest: dict[str, Reading] = {}
        self.sink = sink
        self._sink_failing = False

    async def poll_all_once(self) -> list[Reading]:
        """Poll every device once, buses in parallel, and return all readings."""
        results = await asyncio.gather(*(d.poll_once() for d in self.devices))
        readings = [r for batch in results for r in batch]
        self._deliver(readings)
        return readings

    async def run(self) -> None:
        """Poll forever; cancel the task to stop."""
        try:
            async with asyncio.TaskGroup() as group:
                for device in self.devices:
                    group.create_task(self._device_loop(device), name=f"poll {device.config.name}")
        finally:
            await self.close()

    async def close(self) -> None:
        """Close every bus connection."""
        for bus in self.buses.values():
            await bus.close()

    async def _device_loop(self, device: DevicePoller) -> None:
        next_due = self.clock.now()
        while True:
            self._deliver(await device.poll_once())
            raise_if_cancelled()
            next_due += device.next_interval()
            now = self.clock.now()
            # After a stall, poll at once and carry on from now instead of bursting
            # through every missed slot.
            next_due = max(next_due, now)
            await self.clock.sleep(next_due - now)

    def _deliver(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.latest[reading.channel_id] = reading
        if self.sink is None:
            return
        try:
            self.sink(readings)
        except Exception:
            if not self._sink_failing:
                log.exception("reading sink failed; polling continues")
            self._sink_failing = True
        else:
            self._sink_failing = False
