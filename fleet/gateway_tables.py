"""Gateways, their channels and readings, and their command queue, written once for both backends.

``GatewayTables`` is the part of ``SQLiteRepository`` and ``PostgresRepository`` whose
statements agree: looking gateways up, naming a gateway's channels and reading them raw,
and queuing, claiming and releasing commands; they run through the repository's
``fleet.statements.Statements``. Each backend keeps what it does its own way: reading
gateways with their stream marks (``_gateways``), finding a gateway's number
(``_gateway_num``, cached on SQLite), charts, and the claim of commands
(``command_claim_statement``: PostgreSQL's skips rows another worker is claiming).

This module must never know a database driver, and never hand one command to two
claimers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from fleet.repository import (
    COMMAND_CLAIM_S,
    HEALTH_AHEAD_S,
    Gateway,
    NotFoundError,
    QueuedCommand,
    ReadingPoint,
    Received,
)
from fleet.statements import Statements
from protocol import Health

#: A command waiting, or claimed by a publisher that has not said it sent it in time (one
#: parameter: the oldest claim still held).
CLAIMABLE = "(status = 'pending' OR (status = 'publishing' AND sent_at < ?))"


def health_update(gw: int, item: Received, health: Health) -> tuple[str, tuple[Any, ...]]:
    """The ingest commit's statement keeping a gateway's newest health report (``?`` style).

    Newest by the gateway's clock, so a resent older report changes nothing, unless the
    one stored is more than ``HEALTH_AHEAD_S`` ahead of the fleet's clock when ``item``
    arrived.
    """
    return (
        "UPDATE gateways SET health = ?, health_at = ?, agent_version = ? "
        "WHERE num = ? AND (coalesce(health_at, 0) <= ? OR health_at > ?)",
        (
            health.model_dump_json(),
            health.ts,
            health.agent_version,
            gw,
            health.ts,
            item.received_at + HEALTH_AHEAD_S,
        ),
    )


class GatewayTables:
    """Gateways, channels, raw readings and commands of the repository's database."""

    _sql: Statements

    #: Marks the claimable commands (pending, or claimed longer ago than
    #: ``COMMAND_CLAIM_S``) as being published; RETURNING (id, gateway id, name, args,
    #: issued_at, issued_by). Its parameters: now, then the oldest claim still held.
    command_claim_statement = (
        f"UPDATE commands SET status = 'publishing', sent_at = ? WHERE {CLAIMABLE} "
        "RETURNING id, (SELECT id FROM gateways WHERE num = commands.gw), name, args, "
        "issued_at, issued_by"
    )

    # --- what each backend provides ---------------------------------------------------------

    def _gateways(self, where: str, params: Sequence[Any] = ()) -> list[Gateway]:
        """Gateways ``where`` (SQL with ``?``) with their alarm level and stream marks."""
        raise NotImplementedError

    def _gateway_num(self, gateway_id: str) -> int | None:
        """The gateway's number (its key in the other tables), or None if unknown."""
        raise NotImplementedError

    # --- gateways ---------------------------------------------------------------------------

    def list_gateways(self) -> list[Gateway]:
        """All gateways with their last state, health and highest active alarm level."""
        return self._gateways("")

    def get_gateway(self, gateway_id: str) -> Gateway:
        """One gateway; raises NotFoundError."""
        found = self._gateways("WHERE g.id = ?", [gateway_id])
        if not found:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        return found[0]

    def site_gateways(self, site_id: str) -> list[Gateway]:
        """The gateways of ``site_id`` (none for an unknown site), as ``list_gateways``."""
        return self._gateways("WHERE g.site_id = ?", [site_id])

    # --- channels and readings --------------------------------------------------------------

    def _channel_id(self, gateway_id: str, channel: str) -> int:
        gw = self._gateway_num(gateway_id)
        if gw is None:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        row = self._sql.row("SELECT id FROM channels WHERE gw = ? AND name = ?", [gw, channel])
        if row is None:
            known = ", ".join(self.channels(gateway_id)) or "none yet"
            raise NotFoundError(f"gateway {gateway_id} has no channel {channel!r} (has: {known})")
        return int(row["id"])

    def channels(self, gateway_id: str) -> list[str]:
        """Names of the channels a gateway has uploaded readings of."""
        rows = self._sql.rows(
            "SELECT c.name FROM channels c JOIN gateways g ON g.num = c.gw WHERE g.id = ? "
            "ORDER BY c.name",
            [gateway_id],
        )
        return [r["name"] for r in rows]

    def readings(
        self, gateway_id: str, channel: str, since: float, until: float, limit: int
    ) -> list[ReadingPoint]:
        """Readings of a channel with ``since <= ts < until``, oldest first."""
        cid = self._channel_id(gateway_id, channel)
        rows = self._sql.rows(
            "SELECT seq, ts, value, quality FROM readings WHERE channel = ? AND ts >= ? "
            "AND ts < ? ORDER BY ts, seq LIMIT ?",
            [cid, since, until, limit],
        )
        return [ReadingPoint(r["seq"], r["ts"], r["value"], r["quality"]) for r in rows]

    # --- commands ---------------------------------------------------------------------------

    def queue_command(
        self, gateway_id: str, name: str, args: dict[str, Any], by: str | None, now: float
    ) -> QueuedCommand:
        """Queue a command for delivery to a gateway."""
        gw = self._gateway_num(gateway_id)
        if gw is None:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        command = QueuedCommand(uuid.uuid4().hex, gateway_id, name, args, now, by, "pending")
        with self._sql.writing() as db:
            db.execute(
                "INSERT INTO commands (id, gw, name, args, issued_at, issued_by, status) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                [command.id, gw, name, json.dumps(args), now, by],
            )
        return command

    def claim_commands(self, now: float) -> list[QueuedCommand]:
        """Take the pending commands (and claims older than ``COMMAND_CLAIM_S``), oldest first.

        Atomic, so with several ingest workers each command is delivered by one of them; a
        claim whose publisher died before ``command_sent`` is taken again once it expires.
        """
        stale = now - COMMAND_CLAIM_S
        if self._sql.row(f"SELECT 1 FROM commands WHERE {CLAIMABLE} LIMIT 1", [stale]) is None:
            return []
        with self._sql.writing() as db:
            rows = db.rows(self.command_claim_statement, [now, stale])
        commands = [
            QueuedCommand(cid, gateway_id, name, json.loads(args), issued, by, "publishing")
            for cid, gateway_id, name, args, issued, by in rows
        ]
        return sorted(commands, key=lambda c: c.issued_at)

    def command_sent(self, command_id: str) -> None:
        """Record that the broker took a claimed command (its claim no longer expires)."""
        with self._sql.writing() as db:
            db.execute(
                "UPDATE commands SET status = 'sent' WHERE id = ? AND status = 'publishing'",
                [command_id],
            )

    def release_command(self, command_id: str) -> None:
        """Put a claimed command back for the next delivery attempt."""
        with self._sql.writing() as db:
            db.execute(
                "UPDATE commands SET status = 'pending', sent_at = NULL "
                "WHERE id = ? AND status = 'publishing'",
                [command_id],
            )
