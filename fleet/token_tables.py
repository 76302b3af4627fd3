"""API and enrollment tokens written once: what both storage backends store of a token.

``TokenTables`` is the part of ``SQLiteRepository`` and ``PostgresRepository`` that keeps
API tokens (``TokenStore``) and makes, lists and revokes enrollment tokens; its
statements run through the repository's ``fleet.statements.Statements``. Redeeming an
enrollment token registers a gateway, which each backend does on its own.

This module must never store or log a token's secret: only its hash is kept, and the
secret is returned once, to the caller that made it.
"""

from __future__ import annotations

from fleet import store_rows
from fleet.credentials import new_secret, token_hash
from fleet.repository import (
    API_TOKEN_TTL_S,
    ApiToken,
    ConflictError,
    EnrollmentToken,
    NotFoundError,
    Role,
)
from fleet.statements import Row, Statements
from fleet.timestamps import iso


def _made(row: Row | None) -> Row:
    """The row a statement with ``RETURNING *`` must return."""
    if row is None:
        msg = "the statement returned no row"
        raise RuntimeError(msg)
    return row


class TokenTables:
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
