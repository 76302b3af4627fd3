"""Console sessions: an API token, once checked, opens a signed session cookie.

The cookie names the API token and when the session ends, signed with a key of the
fleet's data directory (HMAC-SHA256); it holds no secret of the token. Every request
checks the token again (a revoked or expired token ends its sessions at once), and a
state-changing request made with the cookie must carry the session's CSRF token, which
is derived from the cookie with the same key. Never logs a cookie or a CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from fleet.secret_key import b64, load_or_create_key, unb64

KEY_FILE = "console-session.key"
COOKIE = "hw_session"
CSRF_HEADER = "X-CSRF-Token"
#: A duty shift; the API token's own expiry ends a session sooner.
SESSION_TTL_S = 12 * 3600.0
_PAYLOAD = struct.Struct(">QI8s")  # token id, expiry (epoch s), random nonce
_MAC_BYTES = 16


class SessionError(ValueError):
    """A cookie that is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class Session:
    """A checked cookie: whose token, until when, and the CSRF token that goes with it."""

    token_id: int
    expires_at: float
    csrf: str


@dataclass(frozen=True, slots=True)
class ConsoleSessions:
    """Opens and checks session cookies with one key."""

    key: bytes

    @classmethod
    def load_or_create(cls, data_dir: Path) -> ConsoleSessions:
        """The key in ``data_dir/console-session.key``, made (mode 0600) on first use."""
        return cls(load_or_create_key(data_dir, KEY_FILE))

    def _mac(self, label: bytes, payload: bytes) -> bytes:
        return hmac.new(self.key, label + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def open(self, token_id: int, expires_at: float) -> tuple[str, Session]:
        """A new cookie value for ``token_id`` until ``expires_at``, and its session."""
        payload = _PAYLOAD.pack(token_id, int(expires_at), secrets.token_bytes(8))
        cookie = b64(payload + self._mac(b"session", payload))
        return cookie, Session(token_id, int(expires_at), b64(self._mac(b"csrf", payload)))

    def check(self, cookie: str, now: float) -> Session:
        """The session a cookie stands for; raises SessionError if forged or expired."""
        try:
            raw = unb64(cookie)
        except ValueError:
            raise SessionError("not a console session") from None
        if len(raw) != _PAYLOAD.size + _MAC_BYTES:
            raise SessionError("not a console session")
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        if not hmac.compare_digest(mac, self._mac(b"session", payload)):
            raise SessionError("not a console session")
        token_id, expires, _nonce = _PAYLOAD.unpack(payload)
        if now >= expires:
            raise SessionError("the console session has ended: sign in again")
        return Session(int(token_id), float(expires), b64(self._mac(b"csrf", payload)))

    @staticmethod
    def csrf_matches(session: Session, sent: str | None) -> bool:
        """Whether a request's CSRF header is the session's (in constant time)."""
        return sent is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())
