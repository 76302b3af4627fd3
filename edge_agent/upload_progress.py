"""Bookkeeping of store-and-forward: what is in flight, what is acknowledged, when to retry.

Pure logic on numbers and clocks passed in, shared by the uplink's session code and its
tests; it never does I/O and never decides on its own to skip a seq.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from protocol import Stream


@dataclass
class StreamProgress:
    """Upload progress of one stream within this process.

    ``acked`` is the watermark; ``inflight`` holds the last seq of each published batch
    the fleet has not acknowledged yet, oldest first.
    """

    stream: Stream
    acked: int = 0
    sent_max: int = 0
    next_after: int = 0
    inflight: deque[int] = field(default_factory=deque)
    progress_at: float = 0.0
    stalled: bool = False
    batches: int = 0
    rows: int = 0

    def restart(self, now: float) -> None:
        """Resend from watermark + 1, as after a reconnect or an ack timeout."""
        self.next_after = self.acked
        self.inflight.clear()
        self.progress_at = now

    def sent(self, last_seq: int, rows: int, now: float) -> None:
        """Record a published batch ending at ``last_seq``."""
        if not self.inflight:
            self.progress_at = now  # the ack timer runs from the oldest unacknowledged send
        self.inflight.append(last_seq)
        self.next_after = last_seq
        self.sent_max = max(self.sent_max, last_seq)
        self.batches += 1
        self.rows += rows

    def acknowledge(self, seq: int, now: float) -> bool:
        """Apply an ack; True when it moved the watermark. Never beyond what was sent."""
        seq = min(seq, self.sent_max)
        if seq <= self.acked:
            return False
        self.acked = seq
        while self.inflight and self.inflight[0] <= seq:
            self.inflight.popleft()
        self.next_after = max(self.next_after, seq)
        self.progress_at = now
        self.stalled = False
        return True
