"""MQTT topic names of protocol v1: everything a gateway says or hears is under its prefix.

A gateway's topics are ``hw/v1/{gateway_id}/{kind}``. The broker's ACL lets a gateway
publish only the kinds in ``GATEWAY_PUBLISHES`` and subscribe only to those in
``GATEWAY_SUBSCRIBES``, both under its own id; the fleet may use every topic.
"""

from __future__ import annotations

import enum
import re

TOPIC_ROOT = "hw/v1"

#: Gateway ids are also MQTT user names and topic levels: no '/', '+', '#' or '$'.
GATEWAY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{2,62}$"
_GATEWAY_ID = re.compile(GATEWAY_ID_PATTERN)


class Topic(enum.StrEnum):
    """The kinds of message under a gateway's prefix, with who sends them."""

    DATA = "data"  # gateway -> fleet: DataBatch, QoS 1
    EVENTS = "events"  # gateway -> fleet: EventBatch, QoS 1
    HEALTH = "health"  # gateway -> fleet: Health, QoS 1, retained
    STATE = "state"  # gateway -> fleet: GatewayState, QoS 1, retained; the Last Will says offline
    ACK = "ack"  # fleet -> gateway: Ack, QoS 1
    CONFIG = "config"  # fleet -> gateway: signed configuration document, QoS 1, retained
    RELEASE = "release"  # fleet -> gateway: signed release manifest, QoS 1, retained
    CMD = "cmd"  # fleet -> gateway: Command, QoS 1
    CMD_RESULT = "cmd/result"  # gateway -> fleet: CommandResult, QoS 1


GATEWAY_PUBLISHES = (Topic.DATA, Topic.EVENTS, Topic.HEALTH, Topic.STATE, Topic.CMD_RESULT)
GATEWAY_SUBSCRIBES = (Topic.ACK, Topic.CONFIG, Topic.RELEASE, Topic.CMD)


def valid_gateway_id(gateway_id: str) -> bool:
    """Return True when ``gateway_id`` may be used as a topic level and an MQTT user name."""
    return _GATEWAY_ID.fullmatch(gateway_id) is not None


def gateway_topic(gateway_id: str, kind: Topic) -> str:
    """The topic of ``kind`` for one gateway, e.g. ``hw/v1/gw-3f2a9c01d4/data``."""
    if not valid_gateway_id(gateway_id):
        msg = f"invalid gateway id {gateway_id!r}: must match {GATEWAY_ID_PATTERN}"
        raise ValueError(msg)
    return f"{TOPIC_ROOT}/{gateway_id}/{kind.value}"


def subscription(kind: Topic, shared_group: str | None = None) -> str:
    """The fleet's filter for ``kind`` from every gateway, optionally as a shared subscription.

    With ``shared_group`` the broker hands each message to one member of the group
    (``$share/{group}/hw/v1/+/{kind}``), so several ingest connections split the load.
    """
    topic_filter = f"{TOPIC_ROOT}/+/{kind.value}"
    return f"$share/{shared_group}/{topic_filter}" if shared_group else topic_filter


def parse_topic(topic: str) -> tuple[str, Topic] | None:
    """Split a v1 topic into ``(gateway_id, kind)``; None for anything else."""
    root = TOPIC_ROOT + "/"
    if not topic.startswith(root):
        return None
    gateway_id, _, rest = topic[len(root) :].partition("/")
    try:
        kind = Topic(rest)
    except ValueError:
        return None
    if not valid_gateway_id(gateway_id):
        return None
    return gateway_id, kind
