"""The gateway's side of a siren node: heartbeat, settings, and watching its fallback.

The node sounds the siren by itself when this agent falls silent in heavy rain. Here the
agent keeps it informed (a heartbeat every poll interval, its fallback settings after
every node restart) and notices when it took over: that is an event, and a latched alarm
of its own, so the agent takes the siren back switched ON and a person must acknowledge.
The heartbeat comes from the agent's event loop, so a hung agent stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from drivers.bus import ModbusBus, TransactionError
from drivers.clock import Clock
from drivers.codec import encode
from drivers.model import Reading
from edge_agent.actuation import EventSink
from protocol.levels import LEVEL_NAMES
from site_schema.siren_node import SETTINGS, SirenNodeSpec

log = logging.getLogger(__name__)

FALLBACK_ENDS = {
    0: "not ended",
    1: "gateway siren write",
    2: "gateway acknowledge",
    3: "local button",
}


class SirenNodeLink:
    """Heartbeat writer and fallback watcher for one siren node."""

    def __init__(self, spec: SirenNodeSpec, bus: ModbusBus, clock: Clock, emit: EventSink) -> None:
        self.spec = spec
        self.bus = bus
        self.clock = clock
        self.emit = emit
        self.level = 0
        self.heartbeats = 0
        self._last: dict[str, float] = {}
        self._settings_due = asyncio.Event()

    def _values(self) -> dict[str, float]:
        s = self.spec
        return {
            "heartbeat_timeout_s": s.heartbeat_timeout_s,
            "fallback_rain": s.fallback_rain_mm,
            "fallback_window_s": s.fallback_window_s,
            "mm_per_tip": s.mm_per_tip,
        }

    async def write_settings(self) -> bool:
        """Write the fallback settings (registers 1-4) in one request."""
        profile = self.spec.device.profile
        words: list[int] = []
        for name, value in self._values().items():
            ch = profile.channel(name)
            words += encode(ch.to_raw(value), ch.dtype, ch.word_order, ch.byte_order)
        first = profile.channel(SETTINGS[0]).address
        try:
            await self.bus.write_registers(
                self.spec.device.unit_id, first, words, self.spec.device.timeout_s
            )
        except TransactionError as exc:
            log.error("siren node %s: settings not written: %s", self.spec.device.name, exc.detail)
            return False
        return True

    async def prepare(self) -> None:
        """Before the first siren command: settings out, and see whether the node took over.

        Called before the actuators assert anything, so an agent that restarts while the
        node sounds its fallback never switches the siren off in between.
        """
        await self.write_settings()
        device = self.spec.device
        active = device.profile.channel("fallback_active")
        try:
            bits = await self.bus.read(
                device.unit_id, active.table, active.address, 1, device.timeout_s, urgent=True
            )
        except TransactionError as exc:
            log.error("siren node %s: state unknown at start: %s", device.name, exc.detail)
            return
        if bits[0]:
            self._fallback_started({"seen": "at agent start"})

    async def run(self) -> None:
        """Heartbeat every poll interval and settings after each node restart, forever.

        Both are tasks of one TaskGroup: neither outlives the link, and the settings
        writer contains its own failures so the heartbeat never stops for them.
        """
        async with asyncio.TaskGroup() as group:
            group.create_task(self._heartbeat(), name=f"heartbeat {self.spec.device.name}")
            group.create_task(self._rewrite_settings(), name=f"settings {self.spec.device.name}")

    async def _rewrite_settings(self) -> None:
        while True:
            await self._settings_due.wait()
            self._settings_due.clear()
            try:
                await self.write_settings()
            except Exception:  # a bug must cost these settings, not the heartbeat
                log.exception("siren node %s: settings not written", self.spec.device.name)

    async def _heartbeat(self) -> None:
        device = self.spec.device
        address = device.profile.channel("heartbeat").address
        while True:
            self.heartbeats = (self.heartbeats + 1) % 65536
            # A lost beat is reported by the poller as a node fault; the next beat retries.
            with contextlib.suppress(TransactionError):
                await self.bus.write_registers(
                    device.unit_id, address, [self.heartbeats], device.timeout_s
                )
            await self.clock.sleep(device.poll_interval_s)

    def observe(self, readings: list[Reading]) -> None:
        """Follow the node's state in the readings the poller took of it."""
        prefix = f"{self.spec.device.name}."
        now = {r.channel_id.removeprefix(prefix): r.value for r in readings if r.good}
        if not now:
            return
        was = self._last
        if now.get("fallback_active") == 1.0 and was.get("fallback_active") != 1.0:
            self._fallback_started(
                {
                    "activations": now.get("fallback_activations"),
                    "rain_window_mm": now.get("rain_window"),
                }
            )
        if now.get("fallback_active") == 0.0 and was.get("fallback_active") == 1.0:
            end = int(now.get("fallback_end", 0))
            self.emit(
                "siren_node_fallback_end",
                self.spec.device.name,
                None,
                {"cause": FALLBACK_ENDS.get(end, f"code {end}")},
            )
        if now.get("heartbeat_silent") == 1.0 and was.get("heartbeat_silent") != 1.0:
            self.emit("siren_node_heartbeat_silent", self.spec.device.name, None, {})
        if "uptime_s" in now and now["uptime_s"] < was.get("uptime_s", 0.0):
            self.emit(
                "siren_node_restart", self.spec.device.name, None, {"uptime_s": now["uptime_s"]}
            )
            self._settings_due.set()  # written again by ``run``, off the poller's callback
        if now.get("crc_errors", 0.0) > was.get("crc_errors", now.get("crc_errors", 0.0)):
            self.emit(
                "siren_node_crc_errors", self.spec.device.name, None, {"count": now["crc_errors"]}
            )
        self._last = {**was, **now}

    def _fallback_started(self, detail: Mapping[str, Any]) -> None:
        self.level = self.spec.fallback_level
        self.emit(
            "siren_node_fallback",
            self.spec.device.name,
            self.level,
            {**detail, "agent_level": LEVEL_NAMES[self.level]},
        )
        log.warning(
            "siren node %s sounded the siren on its own; holding %s until acknowledged",
            self.spec.device.name,
            LEVEL_NAMES[self.level],
        )

    def acknowledge(self) -> None:
        """A person confirmed the node's fallback; it no longer holds the site level up."""
        self.level = 0
