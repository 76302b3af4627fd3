"""Read planning: coalesce a device's channels into the fewest Modbus requests.

The device profile says how many registers (or bits) a device answers in one request and
how wide a gap of unmapped addresses it tolerates inside one read; the plan honours both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.profiles import ChannelSpec, DeviceProfile, Table


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One Modbus read request: a contiguous address range of one table."""

    table: Table
    address: int
    count: int
    channels: tuple[ChannelSpec, ...]


def plan_reads(
    channels: Iterable[ChannelSpec], max_registers: int, max_bits: int, max_gap: int = 0
) -> list[ReadBlock]:
    """Group channels into blocks, greedily in address order, per table.

    A channel joins the current block when the block stays within the per-request limit
    and the hole before the channel is at most ``max_gap`` addresses.
    """
    blocks: list[ReadBlock] = []
    for table in Table:
        in_table = sorted((c for c in channels if c.table == table), key=lambda c: c.address)
        limit = max_bits if table.is_bits else max_registers
        current: list[ChannelSpec] = []
        for ch in in_table:
            if current:
                start = current[0].address
                gap = ch.address - (max(c.end for c in current) + 1)
                if gap <= max_gap and ch.end - start + 1 <= limit:
                    current.append(ch)
                    continue
                blocks.append(_block(table, current))
            current = [ch]
        if current:
            blocks.append(_block(table, current))
    return blocks


def plan_profile(profile: DeviceProfile, names: Iterable[str] | None = None) -> list[ReadBlock]:
    """Plan the reads for a profile, optionally restricted to the named channels.

    Write-only channels (``readable = false``) are never read, named or not: the names
    only pick among ``profile.readable_channels``. An unknown name is a KeyError that
    lists the profile's channels.
    """
    channels = profile.readable_channels
    if names is not None:
        wanted = {profile.channel(n).name for n in names}
        channels = tuple(c for c in channels if c.name in wanted)
    return plan_reads(channels, profile.max_registers, profile.max_bits, profile.max_gap)


def _block(table: Table, channels: list[ChannelSpec]) -> ReadBlock:
    start = channels[0].address
    end = max(c.end for c in channels)
    return ReadBlock(table, start, end - start + 1, tuple(channels))
