"""Bus scan: find which unit ids answer on a bus and guess what they are.

A device is present when it answers at all, even with an exception. It "matches" a
shipped profile when every read that profile plans succeeds and every value lies in its
valid range. The scan only reads; it never writes a register.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from drivers.bus import ModbusBus, TransactionError
from drivers.bus_config import BusConfig
from drivers.codec import decode
from drivers.modbus_exceptions import exception_meaning
from drivers.model import Quality
from drivers.plan import plan_profile
from drivers.profiles import DeviceProfile, Table


@dataclass(frozen=True, slots=True)
class ScanHit:
    """One unit id that answered."""

    bus: str
    unit_id: int
    baudrate: int | None
    answer: str
    matches: tuple[str, ...] = field(default=())


async def _answers(bus: ModbusBus, unit_id: int, timeout_s: float) -> str | None:
    try:
        await bus.read(unit_id, Table.HOLDING, 0, 1, timeout_s)
    except TransactionError as exc:
        if exc.exception_code is not None:
            code = exc.exception_code
            return f"exception {code:02d} ({exception_meaning(code)})"
        if exc.quality == Quality.EXCEPTION:
            return "a short answer"
        return None
    return "registers"


async def _matches(bus: ModbusBus, unit_id: int, profile: DeviceProfile, timeout_s: float) -> bool:
    for block in plan_profile(profile):
        try:
            data = await bus.read(unit_id, block.table, block.address, block.count, timeout_s)
        except TransactionError:
            return False
        for ch in block.channels:
            start = ch.address - block.address
            words = [int(x) for x in data[start : start + ch.width]]
            value = ch.to_engineering(decode(words, ch.dtype, ch.word_order, ch.byte_order))
            if not ch.in_range(value):
                return False
    return True


async def scan_bus(
    config: BusConfig,
    unit_ids: Iterable[int],
    profiles: Iterable[DeviceProfile],
    timeout_s: float = 0.2,
    baudrate: int | None = None,
    progress: Callable[[int], None] | None = None,
    found: Callable[[ScanHit], None] | None = None,
) -> list[ScanHit]:
    """Probe each unit id once; identify the ones that answer against ``profiles``.

    Profiles whose default unit id equals the found id are listed first. ``progress`` is
    called with each unit id once it is done, ``found`` with each hit as it is made.
    """
    bus = ModbusBus(config)
    hits: list[ScanHit] = []
    candidates = list(profiles)
    try:
        for unit_id in unit_ids:
            answer = await _answers(bus, unit_id, timeout_s)
            if answer is not None:
                likely = [p for p in candidates if await _matches(bus, unit_id, p, timeout_s)]
                likely.sort(key=lambda p: (p.default_unit_id != unit_id, p.name))
                hit = ScanHit(config.name, unit_id, baudrate, answer, tuple(p.name for p in likely))
                hits.append(hit)
                if found is not None:
                    found(hit)
            if progress is not None:
                progress(unit_id)
    finally:
        await bus.close()
    return hits


def parse_id_range(text: str) -> list[int]:
    """Parse ``"1-10,20,30-32"`` into unit ids, all within 1..247.

    Raises:
        ValueError: naming the bad part.
    """
    ids: list[int] = []
    for part in text.split(","):
        lo_text, _, hi_text = part.strip().partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if hi_text else lo
        except ValueError:
            msg = f"bad unit id range {part.strip()!r}: use forms like 1-247 or 1,2,5"
            raise ValueError(msg) from None
        if not 1 <= lo <= hi <= 247:
            msg = f"unit ids must lie within 1..247, got {part.strip()!r}"
            raise ValueError(msg)
        ids.extend(range(lo, hi + 1))
    return ids
