"""The lease statements both backends run (``fleet.sqlite_leases``, ``fleet.postgres_leases``).

Written with ``?`` placeholders; PostgreSQL's store turns them into ``%s``. Taking a lease
is one upsert whose ``WHERE`` decides, atomically, whether the row changes hands. These
statements must never hand a lease that has not expired to another holder, unless the
caller names the holder it replaces.
"""

from __future__ import annotations

#: Idempotent: run by each store when it opens.
CREATE_LEASES = (
    "CREATE TABLE IF NOT EXISTS leases ("
    " name TEXT PRIMARY KEY,"
    " holder TEXT NOT NULL,"
    " expires_at {real} NOT NULL,"
    " term BIGINT NOT NULL)"
)

#: (name, holder, expires_at, now, replacing): taken when free, expired, ours or ``replacing``'s.
TAKE = (
    "INSERT INTO leases (name, holder, expires_at, term) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (name) DO UPDATE SET "
    " term = CASE WHEN leases.holder = excluded.holder THEN leases.term ELSE leases.term + 1 END,"
    " holder = excluded.holder, expires_at = excluded.expires_at "
    "WHERE leases.holder = excluded.holder OR leases.expires_at <= ? OR leases.holder = ?"
)

#: (name, holder): the holder lets go; the row stays, so the next holder's term counts on.
GIVE_UP = "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?"

#: (name,)
READ = "SELECT name, holder, expires_at, term FROM leases WHERE name = ?"

#: (name, holder, term): run last in a singleton loop's transaction, locks the row (no
#: other holder can take it before that transaction ends) if ``holder`` still holds the
#: ``term`` it held when the work began; no row changed: another took it meanwhile. Expired
#: and not taken is still held: nobody else can have worked in that term, and refusing it
#: would roll back, every time, a round longer than the lease (its renewal waits on it).
STILL_HELD = "UPDATE leases SET term = term WHERE name = ? AND holder = ? AND term = ?"
