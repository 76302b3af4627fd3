"""The PostgreSQL storage backend of the fleet's core stores, through psycopg 3 and its pool.

``PostgresRepository`` is a ``CoreStore`` (API tokens, gateways and enrollment, readings
and events with the exactly-once ingest commit of ``fleet.postgres_ingest``, alarms) and
an ``IngestStore`` (its ``ota`` is the document outbox, ``fleet.postgres_documents``). It passes
the same contract as SQLite (``tests/test_storage_contract.py``). Any number of fleet
processes may share one database: nothing here is process-local but caches of ids that
never change once committed.

Charts read the per-minute and per-hour rollups (``reading_buckets``): a bucket is summed
from the hours and minutes wholly inside it, and only its ragged edges (under a minute on
each side) from raw rows, so a 30-day chart reads a few hundred rollup rows, not millions
of readings.

This module must never hold a secret in clear (tokens are stored as their hashes) and
never log one.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from fleet.credentials import new_secret, token_hash
from fleet.live_changes import LiveChange, LiveCursor, Read, changes_since, start_cursor
from fleet.postgres_alarm_watch import PostgresAlarmWatch
from fleet.postgres_escalation import PostgresEscalation
from fleet.postgres_ingest import PostgresIngestWriter
from fleet.postgres_leases import PostgresLeases
from fleet.postgres_ota import PostgresOta
from fleet.postgres_schema import create_schema, drop_partitions_before
from fleet.repository import (
    API_TOKEN_TTL_S,
    COMMAND_CLAIM_S,
    Alarm,
    ApiToken,
    CommitResult,
    ConflictError,
    EnrollmentRefusedError,
    EnrollmentToken,
    Gateway,
    NewGateway,
    NotFoundError,
    QueuedCommand,
    ReadingBucket,
    ReadingPoint,
    Receipt,
    Received,
    Role,
    StoredEvent,
    ack_origin_of,
)
from fleet.roster import Person
from fleet.timestamps import iso
from protocol import BAD_QUALITY_MASK, Stream

log = logging.getLogger(__name__)

Row = dict[str, Any]


class PostgresRepository:
    """``CoreStore`` on a PostgreSQL database (``url``: ``postgresql://…``).

    ``pool_size`` connections at most; each call borrows one for its transaction. The
    schema is created on first use.
    """

    def __init__(self, url: str, *, pool_size: int = 8, files_dir: Path | None = None) -> None:
        self.url = url
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=True,
            name="hazardwatch-fleet",
        )
        self._ingest = PostgresIngestWriter()
        with self._pool.connection() as conn:
            create_schema(conn)
        # Release files need a directory (fleet serve's data directory); ingest workers
        # publish documents and apply OTA reports, which need the tables only.
        self.ota = PostgresOta(self._pool, files_dir)
        self.escalation = PostgresEscalation(self._pool)
        self.leases = PostgresLeases(self._pool)

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    def roster(self, site_id: str) -> list[Person]:
        """The responsible persons of ``site_id`` (叫应), every tier."""
        return self.escalation.roster(site_id)

    def live_cursor(self) -> LiveCursor:
        """A cursor at the present for ``live_changes``."""
        with self._snapshot() as read:
            return start_cursor(read)

    def live_changes(self, cursor: LiveCursor) -> list[LiveChange]:
        """Level changes, health and 叫应 steps stored after ``cursor`` (moved past them)."""
        with self._snapshot() as read:
            return changes_since(read, cursor)

    @contextmanager
    def _snapshot(self) -> Iterator[Read]:
        """``fleet.live_changes``'s view: one REPEATABLE READ snapshot, rows as tuples."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = conn.cursor(row_factory=tuple_row)

            def read(query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                return rows.execute(query.replace("?", "%s").encode(), params).fetchall()

            yield read

    def open_alarm_watch(self) -> PostgresAlarmWatch:
        """A LISTEN/NOTIFY watch on the active alarms (``fleet.postgres_alarm_watch``)."""
        return PostgresAlarmWatch(self.url)

    def drop_readings_before(self, cutoff: float) -> list[str]:
        """Retention: drop the day partitions of readings all older than ``cutoff``."""
        with self._pool.connection() as conn:
            return drop_partitions_before(conn, cutoff)

    def _one(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        with self._pool.connection() as conn:
            return conn.execute(query.encode(), params).fetchone()

    def _all(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._pool.connection() as conn:
            return conn.execute(query.encode(), params).fetchall()

    # --- API tokens -------------------------------------------------------------------------

    def create_api_token(
        self, name: str, role: Role, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Store a new API token valid for ``ttl_s``; return it with its secret (shown once)."""
        secret = new_secret("hwt_")
        row = self._one(
            "INSERT INTO api_tokens (name, role, token_hash, created_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING *",
            [name, role.value, token_hash(secret), now, now + ttl_s],
        )
        assert row is not None
        return _api_token(row), secret

    def api_token_for_secret(self, secret: str, now: float) -> ApiToken | None:
        """The token with this secret if it is neither revoked nor expired at ``now``."""
        row = self._one(
            "SELECT * FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL "
            "AND coalesce(expires_at, 0) > %s",
            [token_hash(secret), now],
        )
        return _api_token(row) if row else None

    def rotate_api_token(
        self, token_id: int, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Give a token a new secret valid for ``ttl_s`` (the old one stops at once)."""
        secret = new_secret("hwt_")
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT * FROM api_tokens WHERE id = %s FOR UPDATE", [token_id]
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no API token with id {token_id}")
            if row["revoked_at"] is not None:
                msg = (
                    f"API token {token_id} was revoked at {iso(row['revoked_at'])}; "
                    "create a new one instead"
                )
                raise ConflictError(msg)
            row = conn.execute(
                "UPDATE api_tokens SET token_hash = %s, expires_at = %s WHERE id = %s RETURNING *",
                [token_hash(secret), now + ttl_s, token_id],
            ).fetchone()
        assert row is not None
        return _api_token(row), secret

    def list_api_tokens(self) -> list[ApiToken]:
        """All API tokens, revoked ones included."""
        return [_api_token(r) for r in self._all("SELECT * FROM api_tokens ORDER BY id")]

    def api_token(self, token_id: int) -> ApiToken | None:
        """One API token by id (revoked and expired ones too), or None."""
        row = self._one("SELECT * FROM api_tokens WHERE id = %s", [token_id])
        return _api_token(row) if row else None

    def revoke_api_token(self, token_id: int, now: float) -> ApiToken:
        """Revoke a token; raises NotFoundError."""
        row = self._one(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s RETURNING *",
            [now, token_id],
        )
        if row is None:
            raise NotFoundError(f"no API token with id {token_id}")
        return _api_token(row)

    # --- enrollment -------------------------------------------------------------------------

    def create_enrollment_token(
        self, site_id: str, expires_at: float, created_by: str | None, note: str | None, now: float
    ) -> tuple[EnrollmentToken, str]:
        """Store a one-time token for ``site_id``; return it with its secret."""
        secret = new_secret("hwe_")
        row = self._one(
            "INSERT INTO enrollment_tokens (token_hash, site_id, created_at, expires_at, "
            "created_by, note) VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
            [token_hash(secret), site_id, now, expires_at, created_by, note],
        )
        assert row is not None
        return _enrollment_token(row), secret

    def list_enrollment_tokens(self) -> list[EnrollmentToken]:
        """All enrollment tokens, newest first."""
        rows = self._all("SELECT * FROM enrollment_tokens ORDER BY id DESC")
        return [_enrollment_token(r) for r in rows]

    def revoke_enrollment_token(self, token_id: int, now: float) -> EnrollmentToken:
        """Revoke an unused token; raises NotFoundError or ConflictError."""
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT * FROM enrollment_tokens WHERE id = %s FOR UPDATE", [token_id]
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no enrollment token with id {token_id}")
            if row["used_at"] is not None:
                msg = f"enrollment token {token_id} was already used by gateway {row['gateway_id']}"
                raise ConflictError(msg)
            row = conn.execute(
                "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, %s) "
                "WHERE id = %s RETURNING *",
                [now, token_id],
            ).fetchone()
        assert row is not None
        return _enrollment_token(row)

    def redeem_enrollment_token(self, secret: str, gateway: NewGateway, now: float) -> Gateway:
        """Atomically use the token and register the gateway; raises EnrollmentRefusedError.

        A used token presented again, before it expires, with the key of the gateway it
        enrolled is that gateway retrying after it lost the answer: it keeps its id and
        gets the new password in place of the old one.
        """
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT * FROM enrollment_tokens WHERE token_hash = %s FOR UPDATE",
                [token_hash(secret)],
            ).fetchone()
            if row is None:
                msg = (
                    "unknown enrollment token: check that it was copied completely, "
                    "or ask the county for a new one"
                )
                raise EnrollmentRefusedError(msg, gone=False)
            if row["revoked_at"] is not None:
                msg = f"this enrollment token was revoked at {iso(row['revoked_at'])}"
                raise EnrollmentRefusedError(msg + "; ask the county for a new one", gone=True)
            retry = row["used_at"] is not None and now < row["expires_at"]
            if retry and _reissue(conn, row["gateway_id"], gateway):
                log.warning(
                    "enrollment token %s redeemed again by gateway %s (same key): "
                    "credentials issued anew",
                    row["id"],
                    row["gateway_id"],
                )
                enrolled = str(row["gateway_id"])
            elif row["used_at"] is not None:
                # Not which gateway: whoever holds a copy of the token must learn nothing.
                msg = (
                    f"this enrollment token was already used at {iso(row['used_at'])}; "
                    "a token works once, ask the county for a new one"
                )
                raise EnrollmentRefusedError(msg, gone=True)
            elif now >= row["expires_at"]:
                msg = f"this enrollment token expired at {iso(row['expires_at'])}"
                raise EnrollmentRefusedError(msg + "; ask the county for a new one", gone=True)
            else:
                conn.execute(
                    "INSERT INTO gateways (id, site_id, public_key, mqtt_password_hash, "
                    "hostname, agent_version, enrolled_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        gateway.gateway_id,
                        row["site_id"],
                        gateway.public_key,
                        gateway.mqtt_password_hash,
                        gateway.hostname,
                        gateway.agent_version,
                        now,
                    ],
                )
                conn.execute(
                    "UPDATE enrollment_tokens SET used_at = %s, gateway_id = %s WHERE id = %s",
                    [now, gateway.gateway_id, row["id"]],
                )
                enrolled = gateway.gateway_id
        return self.get_gateway(enrolled)

    def broker_accounts(self) -> list[tuple[str, str]]:
        """``(username, mosquitto password hash)`` of every enrolled gateway."""
        rows = self._all("SELECT id, mqtt_password_hash FROM gateways ORDER BY id")
        return [(r["id"], r["mqtt_password_hash"]) for r in rows]

    # --- gateways ---------------------------------------------------------------------------

    def list_gateways(self) -> list[Gateway]:
        """All gateways with their last state, health and highest active alarm level."""
        return self._gateways("", [])

    def get_gateway(self, gateway_id: str) -> Gateway:
        """One gateway; raises NotFoundError."""
        found = self._gateways("WHERE g.id = %s", [gateway_id])
        if not found:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        return found[0]

    def site_gateways(self, site_id: str) -> list[Gateway]:
        """The gateways of ``site_id`` (none for an unknown site), as ``list_gateways``."""
        return self._gateways("WHERE g.site_id = %s", [site_id])

    def _gateways(self, where: str, params: list[Any]) -> list[Gateway]:
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT g.*, (SELECT max(a.level) FROM alarms a WHERE a.gw = g.num "
                "AND a.cleared_at IS NULL) AS alarm_level, "
                "(SELECT json_object_agg(m.stream, m.contiguous) FROM stream_marks m "
                f"WHERE m.gw = g.num) AS marks FROM gateways g {where} ORDER BY g.id".encode(),
                params,
            ).fetchall()
        return [
            Gateway(
                id=r["id"],
                site_id=r["site_id"],
                public_key=r["public_key"],
                hostname=r["hostname"],
                agent_version=r["agent_version"],
                enrolled_at=r["enrolled_at"],
                state=r["state"],
                state_at=r["state_at"],
                last_seen=r["last_seen"],
                health=json.loads(r["health"]) if r["health"] else None,
                health_at=r["health_at"],
                alarm_level=r["alarm_level"] or 0,
                streams={s.value: int((r["marks"] or {}).get(s.value, 0)) for s in Stream},
                site=json.loads(r["site_summary"]) if r["site_summary"] else None,
            )
            for r in rows
        ]

    def _gateway_num(self, gateway_id: str) -> int | None:
        row = self._one("SELECT num FROM gateways WHERE id = %s", [gateway_id])
        return None if row is None else int(row["num"])

    def queue_command(
        self, gateway_id: str, name: str, args: dict[str, Any], by: str | None, now: float
    ) -> QueuedCommand:
        """Queue a command for delivery to a gateway."""
        gw = self._gateway_num(gateway_id)
        if gw is None:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        command = QueuedCommand(uuid.uuid4().hex, gateway_id, name, args, now, by, "pending")
        self._one(
            "INSERT INTO commands (id, gw, name, args, issued_at, issued_by, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'pending') RETURNING id",
            [command.id, gw, name, json.dumps(args), now, by],
        )
        return command

    def claim_commands(self, now: float) -> list[QueuedCommand]:
        """Take the pending commands (and claims older than ``COMMAND_CLAIM_S``), oldest first.

        Atomic (``FOR UPDATE SKIP LOCKED``), so with several ingest workers each command is
        delivered by one of them; a claim whose publisher died before ``command_sent`` is
        taken again once it expires.
        """
        rows = self._all(
            "UPDATE commands c SET status = 'publishing', sent_at = %s FROM gateways g "
            "WHERE g.num = c.gw AND c.id IN (SELECT id FROM commands WHERE status = 'pending' "
            "OR (status = 'publishing' AND sent_at < %s) FOR UPDATE SKIP LOCKED) "
            "RETURNING c.id, g.id AS gateway_id, c.name, c.args, c.issued_at, c.issued_by",
            [now, now - COMMAND_CLAIM_S],
        )
        commands = [
            QueuedCommand(
                r["id"],
                r["gateway_id"],
                r["name"],
                json.loads(r["args"]),
                r["issued_at"],
                r["issued_by"],
                "publishing",
            )
            for r in rows
        ]
        return sorted(commands, key=lambda c: c.issued_at)

    def command_sent(self, command_id: str) -> None:
        """Record that the broker took a claimed command (its claim no longer expires)."""
        self._one(
            "UPDATE commands SET status = 'sent' WHERE id = %s AND status = 'publishing' "
            "RETURNING id",
            [command_id],
        )

    def release_command(self, command_id: str) -> None:
        """Put a claimed command back for the next delivery attempt."""
        self._one(
            "UPDATE commands SET status = 'pending', sent_at = NULL "
            "WHERE id = %s AND status = 'publishing' RETURNING id",
            [command_id],
        )

    # --- ingest and readings ----------------------------------------------------------------

    def commit(self, received: Sequence[Received]) -> CommitResult:
        """Store messages; each batch all-or-nothing, rows already held ignored."""
        # Gateway order: every lock a group takes is in the same order in every worker.
        ordered = sorted(received, key=lambda item: item.gateway_id)
        with self._pool.connection() as conn:
            return self._ingest.commit(conn, ordered)

    def _channel_id(self, gateway_id: str, channel: str) -> int:
        gw = self._gateway_num(gateway_id)
        if gw is None:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        row = self._one("SELECT id FROM channels WHERE gw = %s AND name = %s", [gw, channel])
        if row is None:
            known = ", ".join(self.channels(gateway_id)) or "none yet"
            raise NotFoundError(f"gateway {gateway_id} has no channel {channel!r} (has: {known})")
        return int(row["id"])

    def channels(self, gateway_id: str) -> list[str]:
        """Names of the channels a gateway has uploaded readings of."""
        rows = self._all(
            "SELECT c.name FROM channels c JOIN gateways g ON g.num = c.gw WHERE g.id = %s "
            "ORDER BY c.name",
            [gateway_id],
        )
        return [r["name"] for r in rows]

    def readings(
        self, gateway_id: str, channel: str, since: float, until: float, limit: int
    ) -> list[ReadingPoint]:
        """Readings of a channel with ``since <= ts < until``, oldest first."""
        cid = self._channel_id(gateway_id, channel)
        rows = self._all(
            "SELECT seq, ts, value, quality FROM readings WHERE channel = %s AND ts >= %s "
            "AND ts < %s ORDER BY ts, seq LIMIT %s",
            [cid, since, until, limit],
        )
        return [ReadingPoint(r["seq"], r["ts"], r["value"], r["quality"]) for r in rows]

    def reading_buckets(
        self, gateway_id: str, channel: str, since: float, until: float, step: float
    ) -> list[ReadingBucket]:
        """Min/avg/max of good readings per ``step`` seconds; empty buckets are left out.

        Read from the hour and minute rollups wholly inside each bucket, and raw rows for
        the rest (see ``cover``).
        """
        cid = self._channel_id(gateway_id, channel)
        plan = cover(since, until, step)
        sums: dict[int, list[Any]] = {}
        with self._pool.connection() as conn, conn.transaction():
            for table, ranges in (("readings_hour", plan.hours), ("readings_minute", plan.minutes)):
                if not ranges:
                    continue
                rows = conn.execute(
                    f"SELECT r.start AS at, r.good, r.bad, r.total, r.low, r.high "
                    f"FROM unnest(%s::float8[], %s::float8[]) AS w(lo, hi) "
                    f"JOIN {table} r ON r.channel = %s AND r.start >= w.lo AND r.start < w.hi",
                    [[lo for lo, _ in ranges], [hi for _, hi in ranges], cid],
                ).fetchall()
                for r in rows:
                    _add(sums, int((r["at"] - since) // step), r)
            if plan.raw:
                rows = conn.execute(
                    "SELECT r.ts AS at, CASE WHEN r.value IS NOT NULL "
                    "AND (r.quality & %s) = 0 THEN 1 ELSE 0 END AS good, "
                    "CASE WHEN r.value IS NOT NULL AND (r.quality & %s) = 0 THEN 0 ELSE 1 END "
                    "AS bad, r.value AS total, r.value AS low, r.value AS high "
                    "FROM unnest(%s::float8[], %s::float8[]) AS w(lo, hi) "
                    "JOIN readings r ON r.channel = %s AND r.ts >= w.lo AND r.ts < w.hi",
                    [
                        BAD_QUALITY_MASK,
                        BAD_QUALITY_MASK,
                        [lo for lo, _ in plan.raw],
                        [hi for _, hi in plan.raw],
                        cid,
                    ],
                ).fetchall()
                for r in rows:
                    _add(sums, int((r["at"] - since) // step), r)
        return [
            ReadingBucket(since + b * step, good, bad, low, (total / good) if good else None, high)
            for b, (good, bad, total, low, high) in sorted(sums.items())
        ]

    def events(
        self,
        gateway_ids: Sequence[str],
        *,
        kinds: Sequence[str] | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int,
    ) -> list[StoredEvent]:
        """Events of these gateways with ``since <= ts < until``, newest first."""
        if not gateway_ids or (kinds is not None and not kinds):
            return []
        clauses = ["g.id = ANY(%s)"]
        params: list[Any] = [list(gateway_ids)]
        if kinds is not None:
            clauses.append("e.kind = ANY(%s)")
            params.append(list(kinds))
        if subject is not None:
            clauses.append("e.subject = %s")
            params.append(subject)
        if since is not None:
            clauses.append("e.ts >= %s")
            params.append(since)
        if until is not None:
            clauses.append("e.ts < %s")
            params.append(until)
        params.append(limit)
        rows = self._all(
            "SELECT g.id AS gateway_id, e.seq, e.ts, e.kind, e.subject, e.level, e.detail "
            f"FROM events e JOIN gateways g ON g.num = e.gw WHERE {' AND '.join(clauses)} "
            "ORDER BY e.ts DESC, e.seq DESC LIMIT %s",
            params,
        )
        return [
            StoredEvent(
                r["gateway_id"],
                r["seq"],
                r["ts"],
                r["kind"],
                r["subject"],
                r["level"],
                _json_object(r["detail"]),
            )
            for r in rows
        ]

    # --- alarms -----------------------------------------------------------------------------

    def alarms(
        self,
        *,
        active: bool | None,
        gateway_ids: Sequence[str] | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[Alarm]:
        """Alarms, newest first, in one query; ``active`` True for those not back to normal."""
        clauses: list[str] = []
        params: list[Any] = []
        if active is not None:
            clauses.append("a.cleared_at IS NULL" if active else "a.cleared_at IS NOT NULL")
        if gateway_ids is not None:
            clauses.append("g.id = ANY(%s)")
            params.append(list(gateway_ids))
        if since is not None:
            clauses.append("coalesce(a.cleared_at, 'Infinity') >= %s")
            params.append(since)
        if until is not None:
            clauses.append("a.raised_at < %s")
            params.append(until)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)
        return self._alarms(f"{where} ORDER BY a.raised_at DESC, a.id DESC LIMIT %s", params)

    def _alarms(self, tail: str, params: list[Any]) -> list[Alarm]:
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT a.*, g.id AS gateway_id FROM alarms a "
                f"JOIN gateways g ON g.num = a.gw {tail}".encode(),
                params,
            ).fetchall()
            receipts: dict[int, list[Receipt]] = {}
            if rows:
                for r in conn.execute(
                    "SELECT * FROM alarm_receipts WHERE alarm_id = ANY(%s) "
                    "ORDER BY confirmed_at, id",
                    [[r["id"] for r in rows]],
                ):
                    receipts.setdefault(r["alarm_id"], []).append(
                        Receipt(
                            r["person"], r["via"], r["note"], r["confirmed_at"], r["recorded_by"]
                        )
                    )
        return [
            Alarm(
                id=r["id"],
                gateway_id=r["gateway_id"],
                rule=r["rule"],
                level=r["level"],
                peak_level=r["peak_level"],
                raised_at=r["raised_at"],
                cleared_at=r["cleared_at"],
                detail=r["detail"],
                acknowledged_at=r["acknowledged_at"],
                acknowledged_by=r["acknowledged_by"],
                ack_note=r["ack_note"],
                ack_origin=ack_origin_of(r["ack_origin"]),
                receipts=tuple(receipts.get(r["id"], ())),
            )
            for r in rows
        ]

    def get_alarm(self, alarm_id: int) -> Alarm:
        """One alarm with its receipts; raises NotFoundError."""
        found = self._alarms("WHERE a.id = %s", [alarm_id])
        if not found:
            raise NotFoundError(f"no alarm with id {alarm_id}")
        return found[0]

    def acknowledge_alarm(self, alarm_id: int, by: str, note: str | None, now: float) -> Alarm:
        """Record who acknowledged an alarm; raises NotFoundError or ConflictError."""
        row = self._one(
            "UPDATE alarms SET acknowledged_at = %s, acknowledged_by = %s, ack_note = %s, "
            "ack_origin = 'fleet' WHERE id = %s AND acknowledged_at IS NULL RETURNING id",
            [now, by, note, alarm_id],
        )
        alarm = self.get_alarm(alarm_id)
        if row is None:
            assert alarm.acknowledged_at is not None
            msg = (
                f"alarm {alarm_id} was already acknowledged by {alarm.acknowledged_by} "
                f"at {iso(alarm.acknowledged_at)}"
            )
            raise ConflictError(msg)
        return alarm

    def confirm_receipt(
        self,
        alarm_id: int,
        person: str,
        via: str | None,
        note: str | None,
        recorded_by: str,
        now: float,
    ) -> Alarm:
        """Record that ``person`` confirmed receiving the warning; raises NotFoundError."""
        self.get_alarm(alarm_id)
        self._one(
            "INSERT INTO alarm_receipts (alarm_id, person, via, note, confirmed_at, "
            "recorded_by) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            [alarm_id, person, via, note, now, recorded_by],
        )
        return self.get_alarm(alarm_id)


class BucketPlan:
    """How to read a chart's buckets: hour rollups, minute rollups and raw rows.

    Each list holds ``[lo, hi)`` ranges of bucket starts (rollups) or of times (raw).
    """

    def __init__(self) -> None:
        self.hours: list[tuple[float, float]] = []
        self.minutes: list[tuple[float, float]] = []
        self.raw: list[tuple[float, float]] = []


def cover(since: float, until: float, step: float) -> BucketPlan:
    """Cover each bucket ``[since + k*step, ...)`` of ``[since, until)`` exactly once.

    Inside a bucket, whole hours come from the hour rollup, whole minutes left at its
    edges from the minute rollup, and the ragged rest (under a minute each side) from raw
    rows. No rollup row ever straddles two buckets, so every sum is exact.
    """
    plan = BucketPlan()
    count = max(0, math.ceil((until - since) / step))
    for k in range(count):
        left = since + k * step
        right = min(left + step, until)
        _split(plan, left, right)
    return plan


def _split(plan: BucketPlan, left: float, right: float) -> None:
    hour_lo, hour_hi = math.ceil(left / 3600) * 3600.0, math.floor(right / 3600) * 3600.0
    if hour_lo < hour_hi:
        plan.hours.append((hour_lo, hour_hi))
        _minutes(plan, left, hour_lo)
        _minutes(plan, hour_hi, right)
    else:
        _minutes(plan, left, right)


def _minutes(plan: BucketPlan, left: float, right: float) -> None:
    if left >= right:
        return
    minute_lo, minute_hi = math.ceil(left / 60) * 60.0, math.floor(right / 60) * 60.0
    if minute_lo < minute_hi:
        plan.minutes.append((minute_lo, minute_hi))
        _raw(plan, left, minute_lo)
        _raw(plan, minute_hi, right)
    else:
        _raw(plan, left, right)


def _raw(plan: BucketPlan, left: float, right: float) -> None:
    if left < right:
        plan.raw.append((left, right))


def _add(sums: dict[int, list[Any]], bucket: int, row: Row) -> None:
    """Add a rollup row (or one raw reading) to its bucket: good, bad, total, low, high."""
    entry = sums.setdefault(bucket, [0, 0, 0.0, None, None])
    entry[0] += row["good"]
    entry[1] += row["bad"]
    if row["good"]:
        entry[2] += row["total"]
        entry[3] = row["low"] if entry[3] is None else min(entry[3], row["low"])
        entry[4] = row["high"] if entry[4] is None else max(entry[4], row["high"])


def _reissue(conn: psycopg.Connection[Row], gateway_id: str, gateway: NewGateway) -> bool:
    """Give ``gateway_id`` the new password if it holds ``gateway``'s public key."""
    cursor = conn.execute(
        "UPDATE gateways SET mqtt_password_hash = %s, hostname = coalesce(%s, hostname), "
        "agent_version = coalesce(%s, agent_version) WHERE id = %s AND public_key = %s",
        [
            gateway.mqtt_password_hash,
            gateway.hostname,
            gateway.agent_version,
            gateway_id,
            gateway.public_key,
        ],
    )
    return cursor.rowcount == 1


def _json_object(text: str) -> dict[str, Any]:
    """A stored event's detail; one that is not a JSON object reads as empty."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _api_token(row: Row) -> ApiToken:
    return ApiToken(
        row["id"],
        row["name"],
        Role(row["role"]),
        row["created_at"],
        row["revoked_at"],
        row["expires_at"],
    )


def _enrollment_token(row: Row) -> EnrollmentToken:
    return EnrollmentToken(
        id=row["id"],
        site_id=row["site_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        created_by=row["created_by"],
        note=row["note"],
        used_at=row["used_at"],
        gateway_id=row["gateway_id"],
        revoked_at=row["revoked_at"],
    )
