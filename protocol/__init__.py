"""The wire contract between gateways and the county fleet: MQTT topics and payloads.

Imported by both ``edge_agent`` and ``fleet``; it depends on pydantic only and must never
import either side (or ``hardware_sim``). Limits and topics load eagerly, the models on
first use. Every payload is versioned JSON; receivers
ignore fields they do not know, so a minor addition never needs a new version.
"""

import importlib
from typing import TYPE_CHECKING, Any

from protocol.limits import (
    ACK_ALARM_COMMAND,
    ACK_TIMEOUT_S,
    BAD_QUALITY_MASK,
    HEALTH_INTERVAL_S,
    MAX_EVENT_ROWS,
    MAX_INFLIGHT_BATCHES,
    MAX_PAYLOAD_BYTES,
    MAX_READING_MAGNITUDE,
    MAX_READING_ROWS,
    MAX_TIMESTAMP,
    MAX_WIRE_INT,
    MIN_TIMESTAMP,
    OFFLINE_AFTER_S,
    PROTOCOL_VERSION,
)
from protocol.quality import BAD_QUALITY, Quality
from protocol.topics import (
    GATEWAY_ID_PATTERN,
    GATEWAY_PUBLISHES,
    GATEWAY_SUBSCRIBES,
    TOPIC_ROOT,
    Topic,
    gateway_topic,
    parse_topic,
    subscription,
    valid_gateway_id,
)

if TYPE_CHECKING:
    from protocol.enrollment import (
        BUNDLE_FORMAT,
        EnrollmentRefusal,
        EnrollmentRequest,
        EnrollmentResponse,
        MqttCredentials,
        OfflineBundle,
        enrollment_message,
    )
    from protocol.events import (
        ACK_EVENT_KIND,
        ALARM_EVENT_KIND,
        AckAlarmArgs,
        AckEvent,
        AlarmEvent,
    )
    from protocol.payloads import (
        Ack,
        BusHealth,
        Command,
        CommandResult,
        DataBatch,
        EventBatch,
        EventRow,
        GatewayState,
        Health,
        ReadingRow,
        SiteChannel,
        SiteRule,
        SiteSummary,
        Stream,
    )

# The models load on first use: a site file or the alarm path never pays for pydantic.
_LAZY = {
    "BUNDLE_FORMAT": "protocol.enrollment",
    "EnrollmentRefusal": "protocol.enrollment",
    "EnrollmentRequest": "protocol.enrollment",
    "EnrollmentResponse": "protocol.enrollment",
    "MqttCredentials": "protocol.enrollment",
    "OfflineBundle": "protocol.enrollment",
    "enrollment_message": "protocol.enrollment",
    "ACK_EVENT_KIND": "protocol.events",
    "ALARM_EVENT_KIND": "protocol.events",
    "AckAlarmArgs": "protocol.events",
    "AckEvent": "protocol.events",
    "AlarmEvent": "protocol.events",
    "Ack": "protocol.payloads",
    "BusHealth": "protocol.payloads",
    "Command": "protocol.payloads",
    "CommandResult": "protocol.payloads",
    "DataBatch": "protocol.payloads",
    "EventBatch": "protocol.payloads",
    "EventRow": "protocol.payloads",
    "GatewayState": "protocol.payloads",
    "SiteChannel": "protocol.payloads",
    "SiteRule": "protocol.payloads",
    "SiteSummary": "protocol.payloads",
    "Health": "protocol.payloads",
    "ReadingRow": "protocol.payloads",
    "Stream": "protocol.payloads",
}


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'protocol' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ACK_ALARM_COMMAND",
    "ACK_EVENT_KIND",
    "ACK_TIMEOUT_S",
    "ALARM_EVENT_KIND",
    "BAD_QUALITY",
    "BAD_QUALITY_MASK",
    "BUNDLE_FORMAT",
    "GATEWAY_ID_PATTERN",
    "GATEWAY_PUBLISHES",
    "GATEWAY_SUBSCRIBES",
    "HEALTH_INTERVAL_S",
    "MAX_EVENT_ROWS",
    "MAX_INFLIGHT_BATCHES",
    "MAX_PAYLOAD_BYTES",
    "MAX_READING_MAGNITUDE",
    "MAX_READING_ROWS",
    "MAX_TIMESTAMP",
    "MAX_WIRE_INT",
    "MIN_TIMESTAMP",
    "OFFLINE_AFTER_S",
    "PROTOCOL_VERSION",
    "TOPIC_ROOT",
    "Ack",
    "AckAlarmArgs",
    "AckEvent",
    "AlarmEvent",
    "BusHealth",
    "Command",
    "CommandResult",
    "DataBatch",
    "EnrollmentRefusal",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EventBatch",
    "EventRow",
    "GatewayState",
    "Health",
    "MqttCredentials",
    "OfflineBundle",
    "Quality",
    "ReadingRow",
    "SiteChannel",
    "SiteRule",
    "SiteSummary",
    "Stream",
    "Topic",
    "enrollment_message",
    "gateway_topic",
    "parse_topic",
    "subscription",
    "valid_gateway_id",
]
