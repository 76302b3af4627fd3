"""Keeps secrets and personal data out of the HTTP logs, inbound and outbound.

uvicorn logs every request's path with its query. Answer links carry a token, and
Kannel's callbacks carry the callback key and the sender's mobile number, so those paths
are logged with the secret parts replaced. httpx logs every outgoing URL at INFO, and a
work-chat webhook URL carries the robot's key, so httpx logs only warnings and worse.
This never drops an access-log line.
"""

from __future__ import annotations

import logging
import re

#: Paths whose secret part is masked: answer-link tokens, and every SMS callback's query.
_SECRET_PATHS = (
    (re.compile(r"^/a/[^/?]+"), "/a/***"),
    (re.compile(r"^(/api/v1/sms/[a-z]+)\?.*$"), r"\1?***"),
)


def redact_path(path: str) -> str:
    """``path`` with tokens, keys and numbers masked."""
    for pattern, replacement in _SECRET_PATHS:
        path = pattern.sub(replacement, path)
    return path


class RedactSecrets(logging.Filter):
    """Masks secrets in uvicorn's access-log records (args: client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument; always keep the record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install() -> None:
    """Attach the filter to uvicorn's access logger (once) and quiet httpx's request log."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
    outgoing = logging.getLogger("httpx")
    outgoing.setLevel(max(logging.WARNING, outgoing.getEffectiveLevel()))
