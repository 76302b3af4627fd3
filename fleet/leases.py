"""Leader leases: which one of several ``fleet serve`` replicas runs a singleton loop.

The 叫应 engine's rounds and the rollout scheduler must run in one process at a time,
whichever replica that is. Each loop has a named lease, a row in the fleet's database
(``LeaseStore``: SQLite or PostgreSQL, ``fleet.sqlite_leases`` / ``fleet.postgres_leases``)
naming its holder and when it expires. ``Leadership`` takes the lease, renews it every
third of its length, and runs the loop only while it holds it; a replica that is killed
stops renewing, and another takes over once the lease has expired. A holder that can
not renew (its database is out of reach) stops its loop at the expiry it last wrote, before
anyone else may take it; a holder that stops cleanly gives the lease up at once.

A holder on this machine whose process is gone (same host and PID namespace, no such
PID) is replaced at once, so one county's fleet restarted after a crash does not wait a
lease out before it calls anyone.

A loop's work that is one transaction checks, last in it, that this process still holds
the term it held when the work began (``HeldTerm.check``): a process frozen longer than a
lease in mid-round, whose lease another has taken meanwhile, has its round rolled back
rather than committed beside the new holder's.

It must never start or keep a loop past the expiry this process last wrote (so two live
holders never overlap), and never stop a loop for good because a renewal failed: it keeps
trying, and starts the loop again when it holds the lease again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fleet import lease_sql
from fleet.worker_threads import in_thread

if TYPE_CHECKING:
    from fleet.statements import Transaction

log = logging.getLogger(__name__)

#: How long a lease lasts unless renewed; a killed holder's loop is taken over after this.
LEASE_S = 10.0
#: The longest lease allowed: a killed holder's 叫应 waits this long for another replica.
MAX_LEASE_S = 300.0
#: The leases of ``fleet serve``'s singleton loops.
ESCALATION_LEASE = "escalation"
ROLLOUTS_LEASE = "rollouts"

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds ``name`` until ``expires_at``; ``term`` counts the holders it has had."""

    name: str
    holder: str
    expires_at: float
    term: int


class LeaseLostError(RuntimeError):
    """Another holder took the lease while this holder's transaction ran: roll it back."""


@dataclass(frozen=True, slots=True)
class HeldTerm:
    """The term of ``name`` this process held when a piece of work began."""

    name: str
    holder: str
    term: int

    def check(self, tx: Transaction) -> None:
        """Last in the work's transaction: raise ``LeaseLostError`` unless it still holds it.

        The row stays locked (SQLite: the write lock; PostgreSQL: the row) until that
        transaction ends, so no other holder takes the lease between the check and the commit.
        """
        still = tx.execute(lease_sql.STILL_HELD, (self.name, self.holder, self.term))
        if still.rowcount != 1:
            msg = f"lease {self.name}: term {self.term} is no longer this process's"
            raise LeaseLostError(msg)


class LeaseStore(Protocol):
    """Leases in the fleet's database; every method is one atomic statement or transaction.

    ``tests/test_lease_store_contract.py`` runs the same tests on each backend.
    """

    def take(
        self, name: str, holder: str, now: float, ttl_s: float, replacing: str | None = None
    ) -> Lease:
        """Take or renew ``name`` for ``holder`` until ``now + ttl_s``; the lease as it is now.

        It is taken when nobody holds it, when it expired (``expires_at <= now``), when
        ``holder`` holds it already (renewed), or when ``replacing`` holds it (a holder known
        to be dead). Otherwise it is left as it is and returned, naming the other holder.
        """
        ...

    def give_up(self, name: str, holder: str) -> None:
        """End ``holder``'s lease on ``name`` at once (nothing if another holds it)."""
        ...

    def lease(self, name: str) -> Lease | None:
        """The lease on ``name`` as stored (possibly expired), or None if never taken."""
        ...


def check_lease_s(ttl_s: float) -> float:
    """``ttl_s`` if it is a usable lease length (finite, above 0, at most ``MAX_LEASE_S``).

    NaN would make every comparison false (a lease never held, or never expired) and a huge
    one would leave a killed holder's 叫应 unrun for that long, so both are refused.
    """
    if not (math.isfinite(ttl_s) and 0 < ttl_s <= MAX_LEASE_S):
        msg = f"a lease length must be above 0 and at most {MAX_LEASE_S:g} s, not {ttl_s}"
        raise ValueError(msg)
    return ttl_s


#: The largest PID Linux gives (``/proc/sys/kernel/pid_max`` is at most 2**22).
_PID_MAX = 2**22


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return "?"


def new_holder_id() -> str:
    """A holder id unique to this process: host, PID namespace, PID and a random part."""
    host = socket.gethostname().replace("/", "_")
    return f"{host}/{_pid_namespace()}/{os.getpid()}/{secrets.token_hex(4)}"


def holder_is_gone(holder: str) -> bool:
    """Whether ``holder`` was a process on this machine that no longer runs.

    False whenever it cannot be told for sure (another host, another PID namespace, a PID
    that is alive, or was reused): then only the lease's expiry frees it.
    """
    parts = holder.split("/")
    # A PID as new_holder_id writes it: ASCII digits ('²'.isdigit() too), and one the
    # kernel could have given (os.kill overflows on a larger one).
    if len(parts) != 4 or not (parts[2].isascii() and parts[2].isdigit()):
        return False
    if not 0 < int(parts[2]) <= _PID_MAX:
        return False
    host, namespace, pid = parts[0], parts[1], int(parts[2])
    if host != socket.gethostname().replace("/", "_") or namespace != _pid_namespace():
        return False
    if pid == os.getpid():
        return False  # this process: a holder id of ours from an earlier Leadership
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Leadership:
    """Runs ``work`` only while this process holds the lease ``name`` (see the module).

    ``clock`` is wall time as every replica sees it (the expiry is stored in it); replicas'
    clocks must agree to well within ``ttl_s / 3``. ``ttl_s`` is checked by
    ``check_lease_s``; ``renew_s`` defaults to a third of it and must be shorter.
    """

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        holder: str,
        ttl_s: float = LEASE_S,
        clock: Clock = time.time,
        renew_s: float | None = None,
    ) -> None:
        self.ttl_s = check_lease_s(ttl_s)
        self.renew_s = renew_s if renew_s is not None else ttl_s / 3
        if not (math.isfinite(self.renew_s) and 0 < self.renew_s < ttl_s):
            # Renewing no sooner than it expires would stop and start the loop every time.
            msg = f"lease {name!r}: renew_s must be above 0 and below ttl_s, not {renew_s}"
            raise ValueError(msg)
        self.store = store
        self.name = name
        self.holder = holder
        self.clock = clock
        #: Until when (``clock``) this process may run ``work``; 0 when it does not hold it.
        self.held_until = 0.0
        #: The term of the lease this process holds, or last held.
        self.term = 0
        #: How many times this process took the lease from nobody or from another holder.
        self.taken = 0
        #: How many times it looked (took, renewed or was refused the lease).
        self.looks = 0
        self._failing = False

    @property
    def held(self) -> bool:
        """Whether this process holds the lease now (by its own clock)."""
        return self.clock() < self.held_until

    def held_term(self) -> HeldTerm | None:
        """The term held now, for work to check before it commits; None if not held."""
        return HeldTerm(self.name, self.holder, self.term) if self.held else None

    def try_take(self) -> bool:
        """One attempt to take or renew the lease (blocking); whether it is held now."""
        now = self.clock()
        current = self.store.lease(self.name)
        replacing = None
        if (
            current is not None
            and current.holder != self.holder
            and current.expires_at > now
            and holder_is_gone(current.holder)
        ):
            replacing = current.holder
            log.info("lease %s: its holder's process is gone; taking it over", self.name)
        lease = self.store.take(self.name, self.holder, now, self.ttl_s, replacing)
        self.looks += 1
        if lease.holder != self.holder:
            self.held_until = 0.0
            return False
        if not self.held:
            self.taken += 1
            log.info("lease %s: held by this process (term %d)", self.name, lease.term)
        self.term = lease.term  # (before held_until: held_term never pairs it with an old term)
        # Measured from before the statement: the others see it expire no sooner.
        self.held_until = now + self.ttl_s
        return True

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Hold the lease and run ``work`` while held, until cancelled; then give it up."""
        task: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    await in_thread(self.try_take)
                except Exception:
                    # Keep the loop until the lease this process last wrote runs out.
                    log.log(logging.DEBUG if self._failing else logging.WARNING,
                            "lease %s: cannot renew; trying again", self.name,
                            exc_info=not self._failing)  # fmt: skip
                    self._failing = True
                else:
                    self._failing = False
                if self.held and task is None:
                    task = asyncio.create_task(work(), name=f"fleet-{self.name}")
                elif not self.held and task is not None:
                    log.warning("lease %s: no longer held; stopping its loop", self.name)
                    await _stopped(task)
                    task = None
                if task is not None and task.done():
                    if not task.cancelled() and task.exception() is not None:
                        log.error("lease %s: its loop failed; starting it again", self.name,
                                  exc_info=task.exception())  # fmt: skip
                    task = None  # the loop ended by itself; start it again next time
                wait_s = self.renew_s
                if self.held:
                    wait_s = min(wait_s, max(0.0, self.held_until - self.clock()))
                await asyncio.sleep(wait_s)
        finally:
            if task is not None:
                await _stopped(task)
            if self.held_until:
                self.held_until = 0.0
                with contextlib.suppress(Exception):
                    await in_thread(self.store.give_up, self.name, self.holder)


async def _stopped(task: asyncio.Task[None]) -> None:
    """Cancel the loop ``task`` and wait until it has ended.

    It waits with ``asyncio.wait``, not by awaiting the task under a suppressed
    ``CancelledError``: that would also swallow a cancel of ``run`` itself arriving while it
    waits (the fleet shutting down just as the lease is lost), and ``run`` would go on
    looking for the lease after its caller had stopped it. A loop that fails as it stops is
    logged, not raised, so it cannot end ``run`` either.
    """
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.error("%s: its loop failed as it stopped", task.get_name(), exc_info=task.exception())
