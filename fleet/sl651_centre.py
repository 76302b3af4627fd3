"""The fleet's SL 651-2014 receiving centre (中心站): telemetry stations report over TCP.

Frames a byte stream with the codec's ``frame_size``, checks each frame's station and
password against the registry, stores a report's readings (exactly once, see
``fleet.sl651_stations``) and only then acknowledges it; a link keep-alive (2F) is
answered too. A multi-packet (M3) upload whose end came with packets missing gets a NAK
naming the first of them, until it is whole. A connection that is idle, trickles, sends
an oversized frame or a multi-packet (M3) upload beyond its bounds is closed, and the
number of connections is bounded. With each station's rules (``fleet.station_alarms``), a
report's new readings are evaluated and the alarm events committed with them. This module
must never acknowledge a report before its readings are committed, never log a station's
password, and never let one station's fault stop another's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self, TypeVar

from alarm_engine.level_change import LevelChange
from fleet.sl651_observations import observations
from fleet.sl651_stations import (
    Observation,
    Station,
    StationRegistry,
    Stored,
    UnknownStationError,
    WrongPasswordError,
)
from fleet.station_alarms import RulesFor, StationRules
from protocol.county_clock import CHINA_STANDARD_TIME
from protocol.levels import LEVEL_NAMES
from protocol.sl651 import (
    Control,
    Direction,
    FunctionCode,
    LinkKeepAlive,
    Message,
    Packet,
    Reassembly,
    Report,
    Sl651Error,
    acknowledge,
    decode,
    encode,
    frame_size,
)
from protocol.sl651.frame import HEADER_SIZE, MAX_BODY, TRAILER_SIZE

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The largest frame the length field can announce.
LARGEST_FRAME = HEADER_SIZE + MAX_BODY + TRAILER_SIZE
#: Reports the centre acknowledges (answers to its own queries, 37-3A, are not).
ACKNOWLEDGED = frozenset(
    {
        FunctionCode.TEST,
        FunctionCode.EQUAL_INTERVAL,
        FunctionCode.TIMED,
        FunctionCode.ADD,
        FunctionCode.HOURLY,
        FunctionCode.PICTURE,
    }
)


#: A station address with this many wrong passwords within GUESS_WINDOW_S is refused
#: until the oldest of them is that old: the two-byte password cannot be guessed by trying.
MAX_WRONG_PASSWORDS = 5
GUESS_WINDOW_S = 600.0
#: Addresses whose wrong passwords are remembered at once (bounded memory).
MAX_GUESSED_STATIONS = 10_000


@dataclass(frozen=True, slots=True)
class CentreSettings:
    """Where the centre listens and how long it lets a station hold a connection.

    ``idle_timeout_s``: a whole frame must arrive within this long after the previous
    one (so a silent or trickling station is closed). ``max_frame_bytes`` refuses larger
    frames before reading them. An M3 upload may hold at most ``max_upload_bytes`` and
    must complete within ``upload_timeout_s``; all uploads being reassembled at once hold
    at most ``max_uploads_bytes``. ``utc_offset``: the stations' clock
    (SL 651 times carry no zone). ``centre_address``: 0 accepts reports to any centre.
    ``seen_flush_s``: keep-alives are answered at once, but the stations they show alive
    are written together this often (and when the centre stops), not one write each.
    """

    host: str = "127.0.0.1"
    port: int = 5005
    max_connections: int = 6000
    idle_timeout_s: float = 300.0
    max_frame_bytes: int = LARGEST_FRAME
    max_upload_bytes: int = 1 << 20
    max_uploads_bytes: int = 64 << 20
    upload_timeout_s: float = 600.0
    utc_offset: timedelta = CHINA_STANDARD_TIME
    centre_address: int = 0
    seen_flush_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections {self.max_connections}: at least 1")
        if not all(t > 0 for t in (self.idle_timeout_s, self.upload_timeout_s, self.seen_flush_s)):
            raise ValueError("idle_timeout_s, upload_timeout_s and seen_flush_s must be above 0")
        if not HEADER_SIZE + TRAILER_SIZE < self.max_frame_bytes <= LARGEST_FRAME:
            msg = f"max_frame_bytes {self.max_frame_bytes}: 18..{LARGEST_FRAME}"
            raise ValueError(msg)
        if not 0 <= self.centre_address <= 0xFF:
            raise ValueError(f"centre_address {self.centre_address} is outside 0..255")


@dataclass
class CentreCounters:
    """What the centre has done since it started (for logs, the bench and tests)."""

    connections: int = 0
    refused_connections: int = 0
    refused_stations: int = 0
    bad_frames: int = 0
    reports: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    idle_closed: int = 0
    keep_alives: int = 0
    naks: int = 0
    alarm_events: int = 0
    rules_faults: int = 0
    seen_writes: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class _CloseConnectionError(Exception):
    """End this connection (the reason is already logged)."""


@dataclass
class _Upload:
    """An M3 upload being reassembled on one connection."""

    reassembly: Reassembly
    started: float
    size: int = 0


@dataclass
class _Uploading:
    """The M3 upload a connection is sending, if any."""

    upload: _Upload | None = None


class ReceivingCentre:
    """The TCP server; use ``async with`` (``port`` is the bound port once entered).

    ``clock`` gives UTC epoch seconds (acknowledgement send times, last seen);
    ``monotonic`` measures M3 upload ages and the window of wrong passwords. Storage runs
    on one thread of its own, so a commit never blocks the event loop. ``rules_for``
    gives a station's site rules (``fleet.station_alarms``): each report's new readings
    are evaluated, and the alarm events committed with them, before it is acknowledged.
    """

    def __init__(
        self,
        registry: StationRegistry,
        settings: CentreSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rules_for: RulesFor | None = None,
    ) -> None:
        self.registry = registry
        self._rules_for = rules_for
        #: Each station's rules (None: it has none), built at its first report and again
        #: when they are set anew; used on the storage thread only.
        self._rules: dict[str, _HeldRules] = {}
        self.settings = settings or CentreSettings()
        self.counters = CentreCounters()
        self._clock = clock
        self._monotonic = monotonic
        #: wrong passwords per station address, monotonic times within GUESS_WINDOW_S
        self._wrong: dict[str, list[float]] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        #: Bytes held by every M3 upload being reassembled (``max_uploads_bytes``).
        self.upload_bytes = 0
        self._storage = ThreadPoolExecutor(1, thread_name_prefix="sl651-storage")
        #: Stations a keep-alive showed alive since the last write, and when.
        self._seen: dict[Station, float] = {}
        self._seen_writer: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port the centre listens on."""
        if self._server is None:
            raise RuntimeError("the centre is not running")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def open_connections(self) -> int:
        """How many stations are connected now."""
        return len(self._connections)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._accept, self.settings.host, self.settings.port, limit=LARGEST_FRAME
        )
        self._seen_writer = asyncio.create_task(self._write_seen_every(), name="sl651-seen")
        log.info("SL 651 centre listening on %s:%s", self.settings.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop listening, close every connection, and finish the storage thread."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._seen_writer is not None:
            self._seen_writer.cancel()
            await asyncio.gather(self._seen_writer, return_exceptions=True)
            self._seen_writer = None
        await self._write_seen()
        self._storage.shutdown(wait=True)

    async def _write_seen_every(self) -> None:
        """Write the keep-alives' last-seen times every ``seen_flush_s``, until cancelled."""
        while True:
            await asyncio.sleep(self.settings.seen_flush_s)
            await self._write_seen()

    async def _write_seen(self) -> None:
        """Write the stations keep-alives showed alive, in one transaction."""
        if not self._seen:
            return
        seen, self._seen = self._seen, {}
        try:
            await self._in_storage(self.registry.seen, seen)
        except sqlite3.Error as exc:  # kept for the next write; a later time wins there
            log.error("SL 651: last seen of %d stations not stored: %s", len(seen), exc)
            for station, ts in seen.items():
                self._seen[station] = max(ts, self._seen.get(station, ts))
            return
        self.counters.seen_writes += 1

    # --- connections -------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.settings.max_connections:
            self.counters.refused_connections += 1
            log.warning(
                "SL 651: %s refused, %d stations connected already (the limit)",
                peer,
                len(self._connections),
            )
            await _close(writer)
            return
        self._connections.add(task)
        self.counters.connections += 1
        try:
            await self._converse(reader, writer, peer)
        except _CloseConnectionError:
            pass
        except asyncio.CancelledError:
            # ``stop`` cancelled it; the handler ends here, its owner awaits it. Raised on,
            # Python 3.11's stream callback would log the cancelled handler as an error.
            log.debug("SL 651: connection from %s closed as the centre stops", peer)
        except (ConnectionError, OSError) as exc:
            log.info("SL 651: %s dropped the link (%s)", peer, exc)
        except Exception:
            log.exception("SL 651: connection from %s failed; closing it", peer)
        finally:
            self._connections.discard(task)
            await _close(writer)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        uploading = _Uploading()
        try:
            await self._frames(reader, writer, peer, uploading)
        finally:
            self._drop_upload(uploading)

    async def _frames(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        uploading: _Uploading,
    ) -> None:
        known: tuple[str, int, Station] | None = None
        while True:
            data = await self._read_frame(reader, peer)
            if data is None:
                return
            try:
                message = decode(data)
            except Sl651Error as exc:
                self._bad_frame(peer, exc.reason.value, str(exc))
                continue
            if message.header.direction is not Direction.UP:
                self._bad_frame(peer, "direction", "a down-going frame sent to the centre")
                continue
            head = message.header
            if known is None or known[:2] != (head.station.hex, head.password):
                # once per connection (and when a frame names another station or password)
                known = (head.station.hex, head.password, await self._authenticate(message, peer))
            station = known[2]
            if message.packet is not None:
                whole = self._reassemble(uploading, message, len(data), peer)
                if whole is None:
                    nak = self._missing_packet(uploading, station)
                    if nak is not None:
                        writer.write(encode(nak))
                        await writer.drain()
                    continue
                message = whole
            answer = await self._answer(station, message, peer)
            if answer is not None:
                writer.write(encode(answer))
                await writer.drain()

    async def _read_frame(self, reader: asyncio.StreamReader, peer: str) -> bytes | None:
        """The next whole frame; None at a clean end of stream (closing on anything else)."""
        settings = self.settings
        try:
            async with asyncio.timeout(settings.idle_timeout_s):
                head = await reader.readexactly(HEADER_SIZE - 1)
                size = frame_size(head)
                if size is None or size > settings.max_frame_bytes:
                    self._bad_frame(peer, "too large", f"a frame of {size} bytes announced")
                    raise _CloseConnectionError
                return head + await reader.readexactly(size - len(head))
        except TimeoutError:
            self.counters.idle_closed += 1
            log.info(
                "SL 651: %s sent no whole frame for %.0f s; closed", peer, settings.idle_timeout_s
            )
            raise _CloseConnectionError from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                self._bad_frame(peer, "truncated", f"the link closed inside a frame ({exc})")
            return None
        except Sl651Error as exc:  # not 7E7E: the stream cannot be resynchronised safely
            self._bad_frame(peer, exc.reason.value, str(exc))
            raise _CloseConnectionError from None

    def _bad_frame(self, peer: str, reason: str, detail: str) -> None:
        self.counters.bad_frames += 1
        self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + 1
        log.warning("SL 651: frame from %s refused: %s", peer, detail)

    async def _authenticate(self, message: Message, peer: str) -> Station:
        head = message.header
        address = head.station.hex
        if self.settings.centre_address and head.centre != self.settings.centre_address:
            self.counters.refused_stations += 1
            log.warning(
                "SL 651: station %s from %s reports to centre %d, not this one (%d); closed",
                address,
                peer,
                head.centre,
                self.settings.centre_address,
            )
            raise _CloseConnectionError
        now = self._monotonic()
        recent = [t for t in self._wrong.get(address, []) if now - t < GUESS_WINDOW_S]
        if len(recent) >= MAX_WRONG_PASSWORDS:
            # The password is two bytes: without this, 65,536 tries over many connections
            # would find it. The station's own frames wait out the window like a guesser's.
            self.counters.refused_stations += 1
            log.warning(
                "SL 651: station %s from %s: %d wrong passwords within %.0f s; refused for now",
                address,
                peer,
                len(recent),
                GUESS_WINDOW_S,
            )
            raise _CloseConnectionError
        try:
            return await self._in_storage(self.registry.authenticate, address, head.password)
        except UnknownStationError:
            self.counters.refused_stations += 1
            log.warning("SL 651: unknown station %s from %s refused; closed", address, peer)
        except WrongPasswordError:
            self.counters.refused_stations += 1
            if len(self._wrong) >= MAX_GUESSED_STATIONS and address not in self._wrong:
                self._wrong = {
                    a: [t for t in ts if now - t < GUESS_WINDOW_S] for a, ts in self._wrong.items()
                }
                self._wrong = {a: ts for a, ts in self._wrong.items() if ts}
            if len(self._wrong) < MAX_GUESSED_STATIONS or address in self._wrong:
                self._wrong[address] = [*recent, now]
            log.warning("SL 651: station %s from %s: wrong password; closed", address, peer)
        raise _CloseConnectionError

    def _reassemble(
        self, uploading: _Uploading, packet: Message, size: int, peer: str
    ) -> Message | None:
        """Add an M3 packet to the connection's upload; the whole message once complete."""
        number = packet.packet
        assert number is not None
        now = self._monotonic()
        upload = uploading.upload
        if upload is not None and now - upload.started > self.settings.upload_timeout_s:
            log.warning("SL 651: M3 upload from %s took too long; dropped", peer)
            self._drop_upload(uploading)
        elif upload is not None and (
            upload.reassembly.header != packet.header or upload.reassembly.count != number.count
        ):
            log.warning("SL 651: %s started another M3 upload; the unfinished one dropped", peer)
            self._drop_upload(uploading)
        upload = uploading.upload = uploading.upload or _Upload(Reassembly(), now)
        settings = self.settings
        if upload.size + size > settings.max_upload_bytes:
            self._bad_frame(
                peer, "upload too large", f"an M3 upload past {settings.max_upload_bytes} B"
            )
            raise _CloseConnectionError
        if self.upload_bytes + size > settings.max_uploads_bytes:
            self._bad_frame(
                peer, "uploads too large", f"M3 uploads past {settings.max_uploads_bytes} B"
            )
            raise _CloseConnectionError
        upload.size += size
        self.upload_bytes += size
        try:
            whole = upload.reassembly.add(packet)
        except Sl651Error as exc:  # the joined body does not decode: unanswered, resent whole
            self._drop_upload(uploading)
            self._bad_frame(peer, exc.reason.value, f"M3 upload refused: {exc}")
            return None
        if whole is None:
            return None
        self._drop_upload(uploading)
        return _with_packet(whole, number)

    def _missing_packet(self, uploading: _Uploading, station: Station) -> Message | None:
        """The NAK asking again for the upload's first missing packet, once its end came."""
        upload = uploading.upload
        if upload is None:
            return None
        nak = upload.reassembly.negative_acknowledge(self._station_time(self._clock()))
        if nak is not None and nak.packet is not None:
            self.counters.naks += 1
            log.info(
                "SL 651: station %s: M3 packet %d of %d missing; asked for it again (NAK)",
                station.address,
                nak.packet.number,
                nak.packet.count,
            )
        return nak

    def _drop_upload(self, uploading: _Uploading) -> None:
        """Let go of the connection's upload and the bytes it held."""
        if uploading.upload is not None:
            self.upload_bytes -= uploading.upload.size
            uploading.upload = None

    async def _answer(self, station: Station, message: Message, peer: str) -> Message | None:
        """Store what ``message`` carries; the acknowledgement to send, if any."""
        body = message.body
        now = self._clock()
        if isinstance(body, LinkKeepAlive):
            # No write per keep-alive: the station's last-seen goes with the next group.
            self.counters.keep_alives += 1
            self._seen[station] = max(now, self._seen.get(station, now))
            return acknowledge(message, self._station_time(now), Control.ESC)
        if not isinstance(body, Report):
            log.info(
                "SL 651: station %s sent function %02X, which the centre does not take",
                station.address,
                message.header.function,
            )
            return None
        self.counters.reports += 1
        found = observations(body, station.address, self.settings.utc_offset)
        foreign = _foreign(body, station.address)
        if foreign:
            log.warning(
                "SL 651: report %d of station %s also names %s; only its own values are kept",
                body.serial,
                station.address,
                ", ".join(foreign),
            )
        try:
            stored: Stored = await self._in_storage(self._store, station, found, now)
        except sqlite3.Error:
            # Not acknowledged: the station resends, and nothing is lost.
            log.exception(
                "SL 651: report %d of station %s not stored; not acknowledged",
                body.serial,
                station.address,
            )
            return None
        self.counters.readings_stored += stored.new
        self.counters.alarm_events += stored.alarms
        self.counters.readings_duplicate += stored.duplicate
        log.debug(
            "SL 651: station %s report %d (function %02X) from %s: %d new, %d held already",
            station.address,
            body.serial,
            message.header.function,
            peer,
            stored.new,
            stored.duplicate,
        )
        if message.header.function not in ACKNOWLEDGED:
            return None
        return acknowledge(message, self._station_time(now), Control.EOT, message.packet)

    def _store(self, station: Station, found: list[Observation], now: float) -> Stored:
        """Store a report's observations with the alarm events of its rules (storage thread).

        After a failed commit or a fault in the rules, the station's rules are dropped and
        rebuilt from the stored history at its next report, so they never run ahead of, or
        behind, what the store holds.
        """
        held = self._station_rules(station, now)
        acks: dict[int, tuple[str, float]] = {}
        if held is not None and held.rules is not None:
            acknowledged = self.registry.acknowledged(station)
            held.applied &= acknowledged.keys()  # closed alarms drop out
            acks = {i: ack for i, ack in acknowledged.items() if i not in held.applied}
        rules, carried = (None, []) if held is None else (held.rules, held.carried)
        try:
            stored = self.registry.store(station, found, now, rules, list(acks.values()), carried)
        except BaseException:
            self._rules.pop(station.address, None)
            raise
        if stored.rules_fault:
            self.counters.rules_faults += 1
            self._rules.pop(station.address, None)
        elif held is not None:
            held.applied |= acks.keys()
            held.carried = []
        return stored

    def _station_rules(self, station: Station, now: float) -> _HeldRules | None:
        """The station's rules, built and brought up to date the first time.

        Up to date: its stored history replayed, then its open alarms' levels restored;
        built anew when its rules were set again since (their revision moved).
        """
        if self._rules_for is None:
            return None
        revision = self.registry.rules_revision(station.address)
        held = self._rules.get(station.address)
        if held is not None and held.revision == revision:
            return held
        carried: list[LevelChange] = []
        try:
            rules = self._rules_for(station)
            if rules is not None:
                open_levels = self.registry.open_alarms(station)
                rules.replay(self.registry.history(station, now - rules.history_s))
                rules.restore(open_levels)
                carried = _catching_up(rules.levels(), open_levels, now)
        except Exception:
            # Tried again at the next report; this one's readings are stored all the same.
            log.exception("SL 651: station %s: its rules could not be built", station.address)
            self.counters.rules_faults += 1
            return None
        held = self._rules[station.address] = _HeldRules(revision, rules, carried)
        return held

    def _station_time(self, now: float) -> datetime:
        """``now`` on the stations' clock (naive, as SL 651 carries it)."""
        return datetime.fromtimestamp(now, UTC).replace(tzinfo=None) + self.settings.utc_offset

    async def _in_storage(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._storage, function, *args)


@dataclass
class _HeldRules:
    """A station's rules as built from one revision, and the acknowledgements they applied.

    ``applied``: ids of open alarms whose acknowledgement the rules have seen; an
    acknowledgement is applied once, so a later re-latch in the same episode holds.
    """

    revision: int
    rules: StationRules | None
    #: Rises the stored readings gave rules just built, not yet stored (``_catching_up``).
    carried: list[LevelChange] = field(default_factory=list)
    applied: set[int] = field(default_factory=set)


def _catching_up(
    levels: Mapping[str, int], open_levels: Mapping[str, int], now: float
) -> list[LevelChange]:
    """Rules the replayed history put above their open alarm (or with none): rises to store.

    A replay's changes are taken as recorded, which holds after a restart; rules set anew
    (or given for the first time) never recorded theirs, and a station already in red
    under them must not wait for a further rise to say so.
    """
    return [
        LevelChange(
            rule_id,
            now,
            open_levels.get(rule_id, 0),
            level,
            "rise",
            math.nan,
            f"{LEVEL_NAMES[level]} on the station's stored readings, as its rules now stand",
        )
        for rule_id, level in levels.items()
        if level > open_levels.get(rule_id, 0)
    ]


def _foreign(report: Report, station: str) -> list[str]:
    return [block.station.hex for block in report.stations if block.station.hex != station]


def _with_packet(message: Message, last: Packet) -> Message:
    """A reassembled upload keeps its packet count, so its answer numbers the last packet."""
    return Message(message.header, message.body, message.end, Packet(last.count, last.count))


def _peer(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
