"""Limits, timings and constants of protocol v1, without any model (no pydantic import).

Site files validate uplink settings against these, so loading a site stays light.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1

#: Largest MQTT payload the fleet accepts on any topic, in bytes.
MAX_PAYLOAD_BYTES = 256 * 1024
#: Most reading rows in one ``DataBatch`` (about 50 bytes each as JSON).
MAX_READING_ROWS = 2000
#: Most event rows in one ``EventBatch``.
MAX_EVENT_ROWS = 200
#: Recommended most unacknowledged batches a gateway keeps in flight per stream.
MAX_INFLIGHT_BATCHES = 4
#: Resend from watermark + 1 when no ack has advanced for this long.
ACK_TIMEOUT_S = 15.0
#: How often a gateway publishes ``Health``.
HEALTH_INTERVAL_S = 60.0
#: The fleet shows a gateway offline after this long without any message from it.
OFFLINE_AFTER_S = 3 * HEALTH_INTERVAL_S

#: Earliest and latest timestamp any message may carry, UTC seconds since the epoch
#: (2000-01-01 and 2100-01-01). Nothing this system measures lies outside; a time outside
#: is a clock that was never set or garbage, and the console's time axis and downsampling
#: must not be stretched over centuries by one bad row. A gateway whose clock reads outside
#: sends its rows clamped to this range and flagged ``clock_unsynced`` (see
#: ``protocol.payloads.sendable_reading``), so its stream never stalls on them.
MIN_TIMESTAMP = 946_684_800.0
MAX_TIMESTAMP = 4_102_444_800.0
#: Largest integer on the wire (seqs, counters, sizes) and in REST paths: what a SQLite
#: INTEGER holds (signed 64 bits). A larger one would overflow inside a commit.
MAX_WIRE_INT = 2**63 - 1
#: Largest magnitude of a reading value: the most a float32 sensor register can hold
#: (FLT_MAX). Anything larger, and any NaN or infinity, is no measurement: the wire refuses
#: it, and a gateway sends such a value as null with the ``out_of_range`` bit instead.
MAX_READING_MAGNITUDE = 3.4028234663852886e38

#: Reading quality bits (the values of ``drivers.model.Quality``); 0 is a good sample.
QUALITY_BITS = {
    "timeout": 1 << 0,
    "crc_error": 1 << 1,
    "exception": 1 << 2,
    "out_of_range": 1 << 3,
    "stuck": 1 << 4,
    "spike": 1 << 5,
    "clock_unsynced": 1 << 6,
    "simulated": 1 << 7,
    "no_connection": 1 << 8,
}
#: Bits that make a value untrustworthy: such readings never enter min/avg/max.
BAD_QUALITY_MASK = sum(
    QUALITY_BITS[name]
    for name in (
        "timeout",
        "crc_error",
        "exception",
        "out_of_range",
        "stuck",
        "spike",
        "no_connection",
    )
)

#: Command name: acknowledge a latched alarm remotely; args ``{"rule": str, "by": str}``.
ACK_ALARM_COMMAND = "ack_alarm"
