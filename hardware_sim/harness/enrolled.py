"""A gateway's enrollment written into its data directory as ``edge enroll`` leaves it.

For tests of what an enrolled gateway does (documents verified against the fleet's pinned
key, the uplink's credentials) without running an enrollment. This module never contacts a
fleet or a broker.
"""

from __future__ import annotations

import time
from pathlib import Path

from edge_agent.enroll import ENROLLMENT_FILE, StoredEnrollment, write_private
from protocol import MqttCredentials


def write_enrollment(
    data_dir: Path,
    gateway_id: str,
    fleet_signing_key: str,
    *,
    fleet_url: str = "http://127.0.0.1:9",
    broker_url: str = "mqtt://127.0.0.1:1",
    site_id: str = "unit",
    password: str = "x" * 24,
) -> StoredEnrollment:
    """Write the enrollment (private, as the agent keeps it) and return it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    enrollment = StoredEnrollment(
        gateway_id=gateway_id,
        site_id=site_id,
        mqtt=MqttCredentials(username=gateway_id, password=password, client_id=gateway_id),
        broker_url=broker_url,
        fleet_signing_key=fleet_signing_key,
        topic_prefix=f"hw/v1/{gateway_id}",
        fleet_url=fleet_url,
        enrolled_at=time.time(),
    )
    write_private(data_dir / ENROLLMENT_FILE, enrollment.model_dump_json().encode())
    return enrollment
