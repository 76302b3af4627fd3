"""Answer links: a short signed token per call, so a person answers without logging in.

The token names the call and when it expires, signed with a key kept in the fleet's data
directory (HMAC-SHA256, truncated to 96 bits). It must never grant anything beyond
answering that one call once; the one-time rule is enforced by the store.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from pathlib import Path

from fleet.secret_key import b64, load_or_create_key, unb64

KEY_FILE = "answer-link.key"
#: How long a link works: longer than any escalation, short enough not to linger.
LINK_TTL_S = 24 * 3600.0
_MAC_BYTES = 12


class LinkError(ValueError):
    """A token that is malformed, forged or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class AnswerLinks:
    """Makes and checks answer tokens with one key."""

    key: bytes

    @classmethod
    def load_or_create(cls, data_dir: Path) -> AnswerLinks:
        """The key in ``data_dir/answer-link.key``, made (mode 0600) on first use."""
        return cls(load_or_create_key(data_dir, KEY_FILE))

    def token(self, call_id: int, now: float, ttl_s: float = LINK_TTL_S) -> str:
        """A token for answering ``call_id`` until ``now + ttl_s``."""
        payload = struct.pack(">QI", call_id, int(now + ttl_s))
        mac = hmac.new(self.key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return b64(payload + mac)

    def call_id(self, token: str, now: float) -> int:
        """The call a token answers; raises LinkError if forged, malformed or expired."""
        try:
            raw = unb64(token)
        except ValueError:
            raise LinkError("not an answer link") from None
        if len(raw) != 12 + _MAC_BYTES:
            raise LinkError("not an answer link")
        payload, mac = raw[:12], raw[12:]
        expected = hmac.new(self.key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise LinkError("not an answer link")
        call_id, expires = struct.unpack(">QI", payload)
        if now > expires:
            raise LinkError("this answer link has expired")
        return int(call_id)
