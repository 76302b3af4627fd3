"""Which database a fleet process stores in: the SQLite file (default) or a PostgreSQL URL.

``check_database`` refuses anything but a ``postgresql://`` (or ``postgres://``) URL with a
clear reason; ``redacted`` is the URL as it may be logged or shown.

This module must never log, print or put in an error message a database password.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


class DatabaseUrlError(ValueError):
    """The ``--database`` value is not a PostgreSQL URL the fleet can use."""


def check_database(url: str) -> str:
    """``url`` if it is a PostgreSQL URL with a host or socket and a database name."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise DatabaseUrlError(f"not a URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        msg = (
            f"{redacted(url)!r} is not a postgresql:// URL (e.g. "
            "postgresql://fleet@db.example/hazardwatch); without --database the fleet "
            "stores in fleet.sqlite in its data directory"
        )
        raise DatabaseUrlError(msg)
    if not parts.path.strip("/"):
        msg = f"{redacted(url)!r} names no database: add it after the host, /hazardwatch"
        raise DatabaseUrlError(msg)
    return url


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
