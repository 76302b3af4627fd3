"""SL 651 telemetry stations at the fleet: their registry, and their readings stored once.

Each registered station is a gateway-like record (``gateways`` row ``sl651-<address>`` at
its site), so its readings land in the ``readings`` table the console charts read. A
reading is stored exactly once per (station, observation time, element): stations resend
a report with its original serial and times when an acknowledgement is lost, and
``sl651_observations`` remembers what is held, in the same transaction as the readings.
Plain ``sqlite3`` on the fleet's database file, writing under the fleet's write lock. This
module must never log a station's password, and never acknowledge anything itself: the
receiving centre acknowledges only after ``store`` has committed.
"""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from alarm_engine.level_change import LevelChange
from fleet.credentials import mosquitto_hash
from fleet.schemas import SITE_ID_PATTERN
from fleet.sqlite_connections import ThreadConnections
from fleet.sqlite_ingest import (
    advance_stream,
    assign_channel_ids,
    insert_events,
    insert_readings,
    stream_mark,
)
from fleet.station_alarms import StationRules, alarm_events
from fleet.station_ids import GATEWAY_PREFIX, STATION_AGENT
from protocol import Stream

SCHEMA = """
CREATE TABLE IF NOT EXISTS sl651_stations (
    address TEXT PRIMARY KEY,
    password INTEGER NOT NULL,
    site_id TEXT NOT NULL,
    gw INTEGER NOT NULL UNIQUE,
    added_at REAL NOT NULL,
    rules TEXT,
    rules_rev INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sl651_observations (
    address TEXT NOT NULL,
    observed_at REAL NOT NULL,
    element TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (address, observed_at, element)
) WITHOUT ROWID;
"""

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[0-9A-F]{10}$")
#: Columns added since the table was first shipped, for a database made before them.
_ADDED_COLUMNS = {"rules": "TEXT", "rules_rev": "INTEGER NOT NULL DEFAULT 0"}


class StationError(ValueError):
    """A registration the registry refuses (bad address, password or site id)."""


class UnknownStationError(LookupError):
    """A station that is not registered (its address, never its password, is the message)."""


class WrongPasswordError(PermissionError):
    """A registered station's address with another password than the registered one."""


@dataclass(frozen=True, slots=True)
class Station:
    """A registered station: its address (10 hex digits), site and gateway record."""

    address: str
    site_id: str
    gateway_id: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One value a station observed: UTC time, the element's channel name, value, quality.

    ``element`` is the dedupe key's element (the channel name, which names the element).
    """

    ts: float
    channel: str
    value: float | None
    quality: int


@dataclass(frozen=True, slots=True)
class Stored:
    """What ``store`` did with a report's observations."""

    new: int
    duplicate: int
    #: Alarm events the site's rules raised from the new observations.
    alarms: int = 0
    #: The rules failed on these observations (logged); the readings are stored all the same.
    rules_fault: bool = False


def parse_address(text: str) -> str:
    """A station address as the registry keeps it: 10 upper-case hex digits."""
    address = text.strip().upper()
    if not _ADDRESS.match(address):
        msg = f"station address {text!r}: give the 10 hex digits of its 5 bytes, e.g. 0012345678"
        raise StationError(msg)
    return address


def parse_password(text: str) -> int:
    """A station password as on the wire: 4 hex digits (2 bytes), e.g. 1234."""
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", text.strip()):
        raise StationError("the password is 4 hex digits (2 bytes on the wire), e.g. 1234")
    return int(text.strip(), 16)


class StationRegistry:
    """The stations and their stored observations, on the fleet's SQLite file.

    Open it after ``fleet.service.open_repository`` has created the fleet's tables. Each
    thread gets its own connection.
    """

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self._db = ThreadConnections(path, durable=durable)
        with self._db.write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            have = {row[1] for row in conn.execute("PRAGMA table_info(sl651_stations)")}
            for column, declared in _ADDED_COLUMNS.items():
                if column not in have:
                    conn.execute(f"ALTER TABLE sl651_stations ADD COLUMN {column} {declared}")

    def close(self) -> None:
        """Close every thread's connection and lock file."""
        self._db.close()

    def add_station(self, address: str, password: int, site_id: str, now: float) -> Station:
        """Register a station at ``site_id``, or change its password and site.

        The gateway record has no broker account anyone can use: its MQTT password hash
        is of a random secret that is never kept.
        """
        address = parse_address(address)
        if not re.fullmatch(SITE_ID_PATTERN, site_id):
            msg = f"site id {site_id!r}: use lower-case letters, digits, '-' and '_'"
            raise StationError(msg)
        if not 0 <= password <= 0xFFFF:
            raise StationError(f"password {password} is outside 0..FFFF (2 bytes)")
        gateway_id = GATEWAY_PREFIX + address.lower()
        with self._db.write() as conn:
            row = conn.execute("SELECT num FROM gateways WHERE id = ?", (gateway_id,)).fetchone()
            if row is None:
                cursor = conn.execute(
                    "INSERT INTO gateways (id, site_id, public_key, mqtt_password_hash, "
                    "hostname, agent_version, enrolled_at) VALUES (?, ?, '', ?, ?, ?, ?)",
                    (
                        gateway_id,
                        site_id,
                        mosquitto_hash(secrets.token_urlsafe(32)),
                        address,
                        STATION_AGENT,
                        now,
                    ),
                )
                gw = cursor.lastrowid
            else:
                gw = int(row[0])
                conn.execute("UPDATE gateways SET site_id = ? WHERE num = ?", (site_id, gw))
            conn.execute(
                "INSERT INTO sl651_stations (address, password, site_id, gw, added_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET "
                "password = excluded.password, site_id = excluded.site_id",
                (address, password, site_id, gw, now),
            )
        return Station(address, site_id, gateway_id)

    def set_rules(self, address: str, text: str | None) -> int:
        """Keep ``text`` (a rules file, checked by the caller) as the station's rules.

        None takes its rules away. Returns the rules' new revision, by which a running
        centre sees the change at the station's next report.

        Raises:
            UnknownStationError: the station is not registered.
        """
        address = parse_address(address)
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE sl651_stations SET rules = ?, rules_rev = rules_rev + 1 "
                "WHERE address = ? RETURNING rules_rev",
                (text, address),
            )
            row = cursor.fetchone()
        if row is None:
            raise UnknownStationError(f"station {address} is not registered")
        return int(row[0])

    def rules_text(self, address: str) -> tuple[str | None, int]:
        """The station's rules file as kept (None: it has none), and its revision.

        Raises:
            UnknownStationError: the station is not registered.
        """
        row = (
            self._db.connection()
            .execute("SELECT rules, rules_rev FROM sl651_stations WHERE address = ?", (address,))
            .fetchone()
        )
        if row is None:
            raise UnknownStationError(f"station {address} is not registered")
        return row[0], int(row[1])

    def rules_revision(self, address: str) -> int:
        """The revision of the station's rules: it changes whenever they are set."""
        row = (
            self._db.connection()
            .execute("SELECT rules_rev FROM sl651_stations WHERE address = ?", (address,))
            .fetchone()
        )
        return -1 if row is None else int(row[0])

    def stations_with_rules(self) -> list[tuple[Station, str]]:
        """Every station that has rules, and their text, by address."""
        rows = self._db.connection().execute(
            "SELECT address, site_id, rules FROM sl651_stations WHERE rules IS NOT NULL "
            "ORDER BY address"
        )
        return [(Station(a, s, GATEWAY_PREFIX + a.lower()), text) for a, s, text in rows]

    def acknowledged(self, station: Station) -> dict[int, tuple[str, float]]:
        """The station's open alarms acknowledged at the fleet: id -> (rule, when)."""
        rows = self._db.connection().execute(
            "SELECT a.id, a.rule, a.acknowledged_at FROM alarms a "
            "JOIN sl651_stations s ON s.gw = a.gw WHERE s.address = ? "
            "AND a.cleared_at IS NULL AND a.acknowledged_at IS NOT NULL",
            (station.address,),
        )
        return {alarm_id: (rule, at) for alarm_id, rule, at in rows}

    def stations(self) -> list[Station]:
        """Every registered station, by address."""
        rows = self._db.connection().execute(
            "SELECT address, site_id FROM sl651_stations ORDER BY address"
        )
        return [Station(a, s, GATEWAY_PREFIX + a.lower()) for a, s in rows]

    def last_seen(self) -> dict[str, float | None]:
        """When each registered station last reported or sent a keep-alive, by address."""
        rows = self._db.connection().execute(
            "SELECT s.address, g.last_seen FROM sl651_stations s JOIN gateways g ON g.num = s.gw"
        )
        return dict(rows.fetchall())

    def authenticate(self, address: str, password: int) -> Station:
        """The station at ``address`` if ``password`` is its own.

        Raises ``UnknownStationError`` or ``WrongPasswordError``.
        """
        row = (
            self._db.connection()
            .execute("SELECT password, site_id FROM sl651_stations WHERE address = ?", (address,))
            .fetchone()
        )
        if row is None:
            raise UnknownStationError(f"station {address} is not registered")
        if not secrets.compare_digest(int(row[0]).to_bytes(2, "big"), password.to_bytes(2, "big")):
            raise WrongPasswordError(f"station {address} sent a password that is not its own")
        return Station(address, row[1], GATEWAY_PREFIX + address.lower())

    def store(
        self,
        station: Station,
        observations: Sequence[Observation],
        now: float,
        rules: StationRules | None = None,
        acks: Sequence[tuple[str, float]] = (),
        carried: Sequence[LevelChange] = (),
    ) -> Stored:
        """Store the observations not yet held, in one transaction, and mark the station seen.

        Each new one gets the next seq of the station's readings stream, so the stream
        stays contiguous and its mark tells how many readings the station has. The rows go
        in by ingest's own path (``fleet.sqlite_ingest``): channel ids, one multi-row
        insert, the stream mark. With ``rules``, the new observations (each once, in time
        order) are evaluated, and the level changes go in, in the same transaction, as
        ``alarm`` events on the station's events stream: the alarm episode opens with the
        readings that raised it, or neither is stored. ``carried``: changes the rules made
        before these observations (where the stored readings put newly built rules), stored
        first. ``acks`` (rule, when), acknowledged at the fleet since the rules last saw
        them, release those rules' latches after the evaluation, and what that changes goes
        in the same way.
        """
        with self._db.write() as conn:
            gw = self._gateway_num(conn, station)
            held = stream_mark(conn, gw, Stream.READINGS)
            ids = assign_channel_ids(conn, gw, (obs.channel for obs in observations), {})
            values: list[Any] = [gw]
            fresh_ones: list[Observation] = []
            seq = held
            for obs in observations:
                key = (station.address, obs.ts, obs.channel)
                fresh = conn.execute(
                    "INSERT INTO sl651_observations (address, observed_at, element, seq) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (*key, seq + 1),
                )
                if fresh.rowcount == 1:
                    seq += 1
                    values += (seq, obs.ts, ids[obs.channel], obs.value, obs.quality)
                    fresh_ones.append(obs)
            new = insert_readings(conn, values)
            if seq > held:
                advance_stream(conn, gw, Stream.READINGS, held + 1, seq)
            alarms, fault = 0, False
            if rules is not None and (fresh_ones or acks or carried):
                evaluation = _Evaluation(rules, fresh_ones, acks, carried)
                alarms, fault = _evaluate(conn, gw, station, evaluation, now)
            conn.execute(
                "UPDATE gateways SET last_seen = max(coalesce(last_seen, 0), ?) WHERE num = ?",
                (now, gw),
            )
        return Stored(new, len(observations) - new, alarms, fault)

    def open_alarms(self, station: Station) -> dict[str, int]:
        """The level of each of the station's open alarms, by rule."""
        rows = self._db.connection().execute(
            "SELECT a.rule, a.level FROM alarms a JOIN sl651_stations s ON s.gw = a.gw "
            "WHERE s.address = ? AND a.cleared_at IS NULL",
            (station.address,),
        )
        return dict(rows.fetchall())

    def history(self, station: Station, since: float) -> list[Observation]:
        """The station's stored readings observed at or after ``since``, in time order."""
        rows = self._db.connection().execute(
            "SELECT r.ts, c.name, r.value, r.quality FROM readings r "
            "JOIN channels c ON c.id = r.channel JOIN sl651_stations s ON s.gw = r.gw "
            "WHERE s.address = ? AND r.ts >= ? ORDER BY r.ts, r.seq",
            (station.address, since),
        )
        return [Observation(ts, name, value, quality) for ts, name, value, quality in rows]

    def seen(self, last_seen: Mapping[Station, float]) -> None:
        """Mark stations seen (keep-alives), all in one transaction."""
        if not last_seen:
            return
        with self._db.write() as conn:
            conn.executemany(
                "UPDATE gateways SET last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?",
                [(ts, station.gateway_id) for station, ts in last_seen.items()],
            )

    @staticmethod
    def _gateway_num(conn: sqlite3.Connection, station: Station) -> int:
        row = conn.execute(
            "SELECT gw FROM sl651_stations WHERE address = ?", (station.address,)
        ).fetchone()
        if row is None:
            raise StationError(f"station {station.address} is not registered")
        return int(row[0])


class _Evaluation(NamedTuple):
    """What ``store`` hands the rules: new observations, acknowledgements, carried changes."""

    rules: StationRules
    fresh: Sequence[Observation]
    acks: Sequence[tuple[str, float]]
    carried: Sequence[LevelChange]


def _evaluate(
    conn: sqlite3.Connection,
    gw: int,
    station: Station,
    evaluation: _Evaluation,
    received_at: float,
) -> tuple[int, bool]:
    """Evaluate ``fresh`` and store the alarm events; (events stored, whether the rules failed).

    A fault in the rules (a bug, a sample they refuse) is logged and costs the alarms of
    this report only: the readings are stored and acknowledged all the same, and the
    centre rebuilds the station's rules from the stored history.
    """
    rules, fresh, acks, carried = evaluation
    try:
        changes = [*carried, *rules.evaluate(sorted(fresh, key=lambda obs: obs.ts))]
        changes += [change for rule, at in acks for change in rules.acknowledge(rule, at)]
    except Exception:
        log.exception("SL 651: station %s: its site rules failed on a report", station.address)
        return 0, True
    if not changes:
        return 0, False
    first = stream_mark(conn, gw, Stream.EVENTS) + 1
    events = alarm_events(changes, first)
    stored = insert_events(conn, gw, events, received_at)
    advance_stream(conn, gw, Stream.EVENTS, first, events[-1].seq)
    return stored, False
