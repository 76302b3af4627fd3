"""Limits, timings and constants of protocol v1, without any model (no pydantic import).

Site files validate uplink settings against these, so loading a site stays light.
"""

from __future__ import annotations

from typing import Final

from protocol.quality import BAD_QUALITY

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
#: Most failure-forecast rules one ``Health`` reports a standing forecast of.
MAX_STANDING_FORECASTS = 64
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

#: Bits that make a value untrustworthy, as a plain int for SQL: such readings never enter
#: min/avg/max.
BAD_QUALITY_MASK: Final = int(BAD_QUALITY)

#: Command name: acknowledge a latched alarm remotely; args ``protocol.events.AckAlarmArgs``.
ACK_ALARM_COMMAND = "ack_alarm"
