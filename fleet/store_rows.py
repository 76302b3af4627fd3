"""Rows to records: how every storage backend reads its core tables into ``fleet.repository``.

Both ``SQLiteRepository`` and ``PostgresRepository`` read the same columns of the same tables;
a row here is anything read by column name (a ``fleet.statements`` row). The stores written
once (``fleet.escalation_tables``, ``fleet.ota_tables``) keep their own.

This module must never run a statement nor know a database driver, and never put a
secret or a token hash into a record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fleet.repository import (
    Alarm,
    ApiToken,
    EnrollmentToken,
    Gateway,
    Receipt,
    Role,
    ack_origin_of,
)
from protocol import Stream

#: A row read by column name.
Row = Mapping[str, Any] | Any


def json_object(text: str) -> dict[str, Any]:
    """A stored event's detail; one that is not a JSON object reads as empty."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def api_token(row: Row) -> ApiToken:
    """An ``api_tokens`` row (its hash left out)."""
    return ApiToken(
        row["id"],
        row["name"],
        Role(row["role"]),
        row["created_at"],
        row["revoked_at"],
        row["expires_at"],
    )


def enrollment_token(row: Row) -> EnrollmentToken:
    """An ``enrollment_tokens`` row (its hash left out)."""
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


def gateway(row: Row, marks: Mapping[str, int]) -> Gateway:
    """A ``gateways`` row with its ``alarm_level`` column and its streams' contiguous marks."""
    return Gateway(
        id=row["id"],
        site_id=row["site_id"],
        public_key=row["public_key"],
        hostname=row["hostname"],
        agent_version=row["agent_version"],
        enrolled_at=row["enrolled_at"],
        state=row["state"],
        state_at=row["state_at"],
        last_seen=row["last_seen"],
        health=json.loads(row["health"]) if row["health"] else None,
        health_at=row["health_at"],
        alarm_level=row["alarm_level"] or 0,
        streams={s.value: int(marks.get(s.value, 0)) for s in Stream},
        site=json.loads(row["site_summary"]) if row["site_summary"] else None,
    )


def receipt(row: Row) -> Receipt:
    """An ``alarm_receipts`` row."""
    return Receipt(row["person"], row["via"], row["note"], row["confirmed_at"], row["recorded_by"])


def alarm(row: Row, receipts: Sequence[Receipt]) -> Alarm:
    """An ``alarms`` row with its ``gateway_id`` column, and its receipts."""
    return Alarm(
        id=row["id"],
        gateway_id=row["gateway_id"],
        rule=row["rule"],
        level=row["level"],
        peak_level=row["peak_level"],
        raised_at=row["raised_at"],
        cleared_at=row["cleared_at"],
        detail=row["detail"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        ack_note=row["ack_note"],
        ack_origin=ack_origin_of(row["ack_origin"]),
        receipts=tuple(receipts),
    )
