"""API and enrollment tokens written once: what both storage backends store of a token.

``TokenTables`` is the part of ``SQLiteRepository`` and ``PostgresRepository`` that keeps
API tokens (``TokenStore``) and enrollment tokens, and registers the gateway that redeems
one (with the broker accounts that follow from it); its statements run through the
repository's ``fleet.statements.Statements``.

This module must never store or log a token's secret: only its hash is kept, and the
secret is returned once, to the caller that made it.
"""

from __future__ import annotations

import logging

from fleet import store_rows
from fleet.credentials import new_secret, token_hash
from fleet.gateway_tables import GatewayTables
from fleet.repository import (
    API_TOKEN_TTL_S,
    ApiToken,
    ConflictError,
    EnrollmentRefusedError,
    EnrollmentToken,
    Gateway,
    NewGateway,
    NotFoundError,
    Role,
)
from fleet.statements import Row, Statements, Transaction
from fleet.timestamps import iso

log = logging.getLogger(__name__)


def _made(row: Row | None) -> Row:
    """The row a statement with ``RETURNING *`` must return."""
    if row is None:
        msg = "the statement returned no row"
        raise RuntimeError(msg)
    return row


class TokenTables(GatewayTables):
    """API tokens and enrollment tokens of the repository's database."""

    _sql: Statements

    # --- API tokens -------------------------------------------------------------------------

    def create_api_token(
        self, name: str, role: Role, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Store a new API token valid for ``ttl_s``; return it with its secret (shown once)."""
        secret = new_secret("hwt_")
        with self._sql.writing() as db:
            row = db.row(
                "INSERT INTO api_tokens (name, role, token_hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING *",
                [name, role.value, token_hash(secret), now, now + ttl_s],
            )
        return store_rows.api_token(_made(row)), secret

    def api_token_for_secret(self, secret: str, now: float) -> ApiToken | None:
        """The token with this secret if it is neither revoked nor expired at ``now``."""
        row = self._sql.row(
            "SELECT * FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL "
            "AND coalesce(expires_at, 0) > ?",
            [token_hash(secret), now],
        )
        return store_rows.api_token(row) if row else None

    def rotate_api_token(
        self, token_id: int, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Give a token a new secret valid for ``ttl_s`` (the old one stops at once).

        Raises NotFoundError, or ConflictError for a revoked token.
        """
        secret = new_secret("hwt_")
        with self._sql.writing() as db:
            row = db.row(f"SELECT * FROM api_tokens WHERE id = ?{self._sql.for_update}", [token_id])
            if row is None:
                raise NotFoundError(f"no API token with id {token_id}")
            if row["revoked_at"] is not None:
                msg = (
                    f"API token {token_id} was revoked at {iso(row['revoked_at'])}; "
                    "create a new one instead"
                )
                raise ConflictError(msg)
            row = db.row(
                "UPDATE api_tokens SET token_hash = ?, expires_at = ? WHERE id = ? RETURNING *",
                [token_hash(secret), now + ttl_s, token_id],
            )
        return store_rows.api_token(_made(row)), secret

    def list_api_tokens(self) -> list[ApiToken]:
        """All API tokens, revoked ones included."""
        rows = self._sql.rows("SELECT * FROM api_tokens ORDER BY id")
        return [store_rows.api_token(r) for r in rows]

    def api_token(self, token_id: int) -> ApiToken | None:
        """One API token by id (revoked and expired ones too), or None."""
        row = self._sql.row("SELECT * FROM api_tokens WHERE id = ?", [token_id])
        return store_rows.api_token(row) if row else None

    def revoke_api_token(self, token_id: int, now: float) -> ApiToken:
        """Revoke a token; raises NotFoundError."""
        with self._sql.writing() as db:
            row = db.row(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? "
                "RETURNING *",
                [now, token_id],
            )
        if row is None:
            raise NotFoundError(f"no API token with id {token_id}")
        return store_rows.api_token(row)

    # --- enrollment -------------------------------------------------------------------------

    def create_enrollment_token(
        self, site_id: str, expires_at: float, created_by: str | None, note: str | None, now: float
    ) -> tuple[EnrollmentToken, str]:
        """Store a one-time token for ``site_id``; return it with its secret."""
        secret = new_secret("hwe_")
        with self._sql.writing() as db:
            row = db.row(
                "INSERT INTO enrollment_tokens (token_hash, site_id, created_at, expires_at, "
                "created_by, note) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                [token_hash(secret), site_id, now, expires_at, created_by, note],
            )
        return store_rows.enrollment_token(_made(row)), secret

    def list_enrollment_tokens(self) -> list[EnrollmentToken]:
        """All enrollment tokens, newest first."""
        rows = self._sql.rows("SELECT * FROM enrollment_tokens ORDER BY id DESC")
        return [store_rows.enrollment_token(r) for r in rows]

    def revoke_enrollment_token(self, token_id: int, now: float) -> EnrollmentToken:
        """Revoke an unused token; raises NotFoundError or ConflictError."""
        with self._sql.writing() as db:
            row = db.row(
                f"SELECT * FROM enrollment_tokens WHERE id = ?{self._sql.for_update}", [token_id]
            )
            if row is None:
                raise NotFoundError(f"no enrollment token with id {token_id}")
            if row["used_at"] is not None:
                msg = f"enrollment token {token_id} was already used by gateway {row['gateway_id']}"
                raise ConflictError(msg)
            row = db.row(
                "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, ?) "
                "WHERE id = ? RETURNING *",
                [now, token_id],
            )
        return store_rows.enrollment_token(_made(row))

    def redeem_enrollment_token(self, secret: str, gateway: NewGateway, now: float) -> Gateway:
        """Atomically use the token and register the gateway; raises EnrollmentRefusedError.

        A used token presented again, before it expires, with the key of the gateway it
        enrolled is that gateway retrying after it lost the answer (a dropped connection,
        a power cut): it keeps its id and gets the new password in place of the old one.
        """
        with self._sql.writing() as db:
            row = db.row(
                f"SELECT * FROM enrollment_tokens WHERE token_hash = ?{self._sql.for_update}",
                [token_hash(secret)],
            )
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
            if retry and _reissue(db, row["gateway_id"], gateway):
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
                db.execute(
                    "INSERT INTO gateways (id, site_id, public_key, mqtt_password_hash, "
                    "hostname, agent_version, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
                db.execute(
                    "UPDATE enrollment_tokens SET used_at = ?, gateway_id = ? WHERE id = ?",
                    [now, gateway.gateway_id, row["id"]],
                )
                enrolled = gateway.gateway_id
        return self.get_gateway(enrolled)

    def broker_accounts(self) -> list[tuple[str, str]]:
        """``(username, mosquitto password hash)`` of every enrolled gateway."""
        rows = self._sql.rows("SELECT id, mqtt_password_hash FROM gateways ORDER BY id")
        return [(r["id"], r["mqtt_password_hash"]) for r in rows]


def _reissue(db: Transaction, gateway_id: str, gateway: NewGateway) -> bool:
    """Give ``gateway_id`` the new password if it holds ``gateway``'s public key."""
    cursor = db.execute(
        "UPDATE gateways SET mqtt_password_hash = ?, hostname = coalesce(?, hostname), "
        "agent_version = coalesce(?, agent_version) WHERE id = ? AND public_key = ?",
        [
            gateway.mqtt_password_hash,
            gateway.hostname,
            gateway.agent_version,
            gateway_id,
            gateway.public_key,
        ],
    )
    return cursor.rowcount == 1
