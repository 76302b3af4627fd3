"""Sirens and broadcast speakers: drive relay coils and a clip player from the alarm level.

``set_level`` never blocks: it records what the outputs should be and wakes the
actuation loop, which writes the coils ahead of any queued poll, reads them back, and
re-asserts them periodically so a relay module that power-cycled returns to the right
state. A write that did not take is tried again within a second, backing off to the
re-assertion period, so a siren the module missed at the alarm's onset is not left off
until then. Actuation never waits on the network, the upload or the disk; events go out
through a non-blocking callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.bus import ModbusBus, TransactionError
from drivers.poller import raise_if_cancelled
from drivers.profiles import ChannelSpec
from protocol.events import ACTUATION_EVENT_KIND, BROADCAST_EVENT_KIND
from protocol.levels import LEVEL_NAMES
from site_schema.actuation_spec import ActuationSpec, LevelAction, RelayActuatorSpec

log = logging.getLogger(__name__)

SHIPPED_CLIPS = Path(__file__).parent / "clips"
#: How long a player cut off (SIGTERM) may take to exit before it is killed.
PLAYER_STOP_S = 2.0
#: How soon relays that failed to take their state are tried again; it doubles on each
#: failure in a row, up to the site's ``reassert_s``.
FAULT_RETRY_S = 0.5

#: kind, subject, level, detail: hands an event to the store without waiting for it.
EventSink = Callable[[str, str | None, int | None, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class PlayerSpec:
    """How to play a clip: an allowed command with ``{clip}`` standing for the file path.

    Built only from the gateway's local agent settings (``agent_settings``), never from a
    site file: the clips are files the gateway has, found by name.
    """

    command: tuple[str, ...]
    clips: Mapping[str, Path]


def _runs(coils: list[ChannelSpec]) -> list[list[ChannelSpec]]:
    """Group coils into runs of adjacent addresses, one write each."""
    runs: list[list[ChannelSpec]] = []
    for coil in coils:
        if runs and coil.address == runs[-1][-1].address + 1:
            runs[-1].append(coil)
        else:
            runs.append([coil])
    return runs


class RelayActuator:
    """One relay module: holds the wanted coil states and makes the hardware match them."""

    def __init__(self, spec: RelayActuatorSpec, bus: ModbusBus, emit: EventSink) -> None:
        self.spec = spec
        self.bus = bus
        self.emit = emit
        self.coils = spec.coils
        self.pattern: str | None = None
        self.faulty = False
        self.last_readback: dict[str, bool] = {}

    def wanted(self) -> dict[str, bool]:
        """Coil name -> state for the current pattern (all off without a pattern)."""
        on = set(self.spec.patterns.get(self.pattern or "", ()))
        return {c.name: c.name in on for c in self.coils}

    async def assert_state(self, reason: str) -> bool:
        """Write every coil, read it back, and report a mismatch as an actuator fault."""
        device = self.spec.device
        wanted = self.wanted()
        try:
            for run in _runs(self.coils):
                values = [wanted[c.name] for c in run]
                await self.bus.write_coils(
                    device.unit_id, run[0].address, values, device.timeout_s, urgent=True
                )
            actual = await self.read_back()
        except TransactionError as exc:
            self._fault(f"{reason}: {exc.detail}", wanted, None)
            return False
        if actual != wanted:
            self._fault(f"{reason}: read back differs from what was written", wanted, actual)
            return False
        if self.faulty:
            self.faulty = False
            self.emit("actuator_ok", self.spec.id, None, {"coils": actual})
        return True

    async def read_back(self) -> dict[str, bool]:
        """Read the coils as the module reports them.

        Raises:
            TransactionError: when the module does not answer.
        """
        device = self.spec.device
        actual: dict[str, bool] = {}
        for run in _runs(self.coils):
            bits = await self.bus.read(
                device.unit_id,
                run[0].table,
                run[0].address,
                len(run),
                device.timeout_s,
                urgent=True,
            )
            actual.update({c.name: bool(bits[i]) for i, c in enumerate(run)})
        self.last_readback = actual
        return actual

    def _fault(self, detail: str, wanted: dict[str, bool], actual: dict[str, bool] | None) -> None:
        # One event when the fault starts, not one per re-assertion while it lasts.
        if not self.faulty:
            self.emit(
                "actuator_fault",
                self.spec.id,
                None,
                {"detail": detail, "wanted": wanted, "actual": actual},
            )
            log.error("actuator %s: %s", self.spec.id, detail)
        self.faulty = True


class ClipPlayer:
    """Plays one broadcast clip at a time through the configured command.

    ``play`` only records the clip wanted; ``run`` (a task of the actuation loop) plays
    it, each clip in a task of its own TaskGroup, cutting off the one playing. A clip that
    fails in any way is an ``actuator_fault`` event, never an error that stops the relays.
    """

    def __init__(self, spec: PlayerSpec, emit: EventSink) -> None:
        self.spec = spec
        self.emit = emit
        self._process: asyncio.subprocess.Process | None = None
        self._wanted: tuple[str, int] | None = None
        self._wake = asyncio.Event()

    def play(self, clip: str, level: int) -> None:
        """Start playing ``clip``, cutting off whatever is playing; never waits."""
        self._wanted = (clip, level)  # a newer clip replaces one not yet started
        self._wake.set()

    async def run(self) -> None:
        """Play what ``play`` asks for, until cancelled; stops the clip playing on exit."""
        async with asyncio.TaskGroup() as clips:
            playing: asyncio.Task[None] | None = None
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._wanted is None:
                    continue
                (clip, level), self._wanted = self._wanted, None
                if playing is not None and not playing.done():
                    playing.cancel()
                    await asyncio.wait([playing])  # it stops its process before it ends
                playing = clips.create_task(self._play(clip, level), name=f"broadcast {clip}")

    async def _play(self, clip: str, level: int) -> None:
        try:
            await self._play_clip(clip, level)
        except asyncio.CancelledError:
            await self.stop()  # cut off by a newer clip, or the agent stops
            raise
        except Exception as exc:  # a bug must cost the clip, not the relays
            log.exception("broadcast of clip %s failed", clip)
            detail = f"clip {clip!r} failed: {type(exc).__name__}: {exc}"
            self.emit("actuator_fault", "player", level, {"detail": detail})

    async def _play_clip(self, clip: str, level: int) -> None:
        path = self.spec.clips.get(clip)
        if path is None:
            self.emit("actuator_fault", "player", level, {"detail": f"no clip named {clip!r}"})
            return
        await self.stop()
        command = [part.replace("{clip}", str(path)) for part in self.spec.command]
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL
            )
        except OSError as exc:
            log.warning("clip %r: the player could not start: %s", clip, exc)
            self.emit("actuator_fault", "player", level, {"detail": f"{command[0]}: {exc}"})
            return
        self._process = process
        self.emit(BROADCAST_EVENT_KIND, clip, level, {"command": command, "started": time.time()})
        code = await process.wait()
        if code not in (0, -15):  # -15: cut off by a newer clip
            # A missing or damaged clip file: the relays sound on, the technician must know.
            log.warning("clip %r: player exited %s", clip, code)
            self.emit("actuator_fault", "player", level, {"detail": f"player exited {code}"})

    async def stop(self) -> None:
        """Stop the clip that is playing, if any."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), PLAYER_STOP_S)
            except TimeoutError:
                process.kill()
                await process.wait()


class Actuation:
    """Turns the site's alarm level into relay patterns and broadcasts.

    ``player`` is the site's choice bound to the gateway's allowed players
    (``agent_settings.bind_player``); without one, levels sound no clip.
    """

    def __init__(
        self,
        spec: ActuationSpec,
        buses: Mapping[str, ModbusBus],
        emit: EventSink,
        player: PlayerSpec | None = None,
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.relays = [RelayActuator(a, buses[a.device.bus], emit) for a in spec.actuators]
        self.player = ClipPlayer(player, emit) if player else None
        self.level = 0
        self._testing = False
        self._wake = asyncio.Event()

    def set_level(self, level: int, cause: str) -> None:
        """Make the outputs follow ``level``; returns at once, the loop does the I/O."""
        if level == self.level:
            return
        old, self.level = self.level, level
        action = self.spec.actions.get(level, LevelAction())
        for relay in self.relays:
            relay.pattern = action.patterns.get(relay.spec.id)
        log.warning(
            "site level %s -> %s: %s",
            LEVEL_NAMES[old],
            LEVEL_NAMES[level],
            ", ".join(f"{r.spec.id}={r.pattern or 'off'}" for r in self.relays) or "no relays",
        )
        self.emit(
            ACTUATION_EVENT_KIND,
            "site",
            level,
            {"from": LEVEL_NAMES[old], "to": LEVEL_NAMES[level], "cause": cause,
             "patterns": {r.spec.id: r.pattern for r in self.relays}},
        )  # fmt: skip
        if action.clip and self.player is not None:
            self.player.play(action.clip, level)
        self._wake.set()

    async def run(self) -> None:
        """Assert the outputs now, then on every change and every ``reassert_s``.

        The clip player, if any, runs beside the relays in the same TaskGroup.
        """
        async with asyncio.TaskGroup() as group:
            if self.player is not None:
                group.create_task(self.player.run(), name="broadcast player")
            group.create_task(self._assert_outputs(), name="relays")

    async def _assert_outputs(self) -> None:
        reason = "start"
        retry_s = FAULT_RETRY_S
        while True:
            self._wake.clear()
            wait_s = self.spec.reassert_s
            if not self._testing:
                asserted = await asyncio.gather(*(r.assert_state(reason) for r in self.relays))
                raise_if_cancelled()
                if all(asserted):
                    retry_s = FAULT_RETRY_S
                else:
                    # A siren that did not take (module unreachable, read back wrong) is
                    # tried again soon, backing off to reassert_s, not left off till then.
                    wait_s, retry_s = min(retry_s, wait_s), min(2 * retry_s, wait_s)
            with contextlib.suppress(TimeoutError):
                # Real time on purpose: re-assertion is about the physical relays, and a
                # simulated clock running 100x must not flood the bus.
                await asyncio.wait_for(self._wake.wait(), wait_s)
                reason = "level change"
                continue
            reason = "re-assert"

    async def self_test(self, audible: bool) -> dict[str, Any]:
        """Read every relay back (silent), or sound the test pattern briefly (audible).

        An audible test is refused while an alarm is active: the siren is in real use.
        """
        if audible and self.level > 0:
            return {"ok": False, "detail": f"alarm level {LEVEL_NAMES[self.level]} is active"}
        results: dict[str, Any] = {}
        if audible:
            self._testing = True
            try:
                for relay in self.relays:
                    relay.pattern = relay.spec.test_pattern
                if self.player is not None and "siren_test" in self.player.spec.clips:
                    self.player.play("siren_test", 0)
                ok = await asyncio.gather(*(r.assert_state("audible test") for r in self.relays))
                await asyncio.sleep(self.spec.test_duration_s)
            finally:
                for relay in self.relays:
                    relay.pattern = None if self.level == 0 else relay.pattern
                self._testing = False
                self._wake.set()
            results = {r.spec.id: bool(o) for r, o in zip(self.relays, ok, strict=True)}
        else:
            for relay in self.relays:
                try:
                    actual = await relay.read_back()
                except TransactionError as exc:
                    results[relay.spec.id] = f"no answer: {exc.detail}"
                    continue
                results[relay.spec.id] = actual == relay.wanted() or f"read back {actual}"
        passed = all(v is True for v in results.values())
        kind = "self_test" if passed else "actuator_fault"
        self.emit(kind, "self_test", None, {"audible": audible, "results": results})
        return {"ok": passed, "results": results}

    def status(self) -> dict[str, Any]:
        """Wanted and last read-back coil states per actuator."""
        return {
            r.spec.id: {
                "pattern": r.pattern,
                "wanted": r.wanted(),
                "read_back": r.last_readback,
                "fault": r.faulty,
            }
            for r in self.relays
        }
