"""Enrollment messages: the REST exchange that turns a one-time token into a gateway.

The gateway ``POST``s an ``EnrollmentRequest`` to ``{fleet}/api/v1/enroll`` and receives
an ``EnrollmentResponse`` (HTTP 201), or an ``EnrollmentRefusal`` with HTTP 400 (malformed),
403 (signature does not match the key) or 410 (token unknown, expired or used).
Keys are Ed25519, sent as standard base64 of the raw 32-byte public key; nothing here
does cryptography, so this module stays free of crypto dependencies. Like every wire
model, these refuse NaN and infinities, and a bundle's expiry lies in the sane time range.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.limits import MAX_TIMESTAMP, MIN_TIMESTAMP, PROTOCOL_VERSION

BUNDLE_FORMAT: Final = "hazardwatch-enrollment-bundle"

Base64Key = Annotated[str, Field(min_length=43, max_length=44)]
Token = Annotated[str, Field(min_length=16, max_length=128)]


def enrollment_message(token: str, public_key: str) -> bytes:
    """The bytes a gateway signs with its new private key to prove it holds the key."""
    return f"hazardwatch-enroll-v1\n{token}\n{public_key}".encode()


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    v: Literal[1] = PROTOCOL_VERSION


class EnrollmentRequest(_Message):
    """Gateway -> fleet: redeem ``token`` for an identity bound to ``public_key``.

    ``signature`` is the base64 Ed25519 signature of ``enrollment_message(token,
    public_key)`` made with the gateway's private key (which never leaves the device).
    """

    token: Token
    public_key: Base64Key
    signature: Annotated[str, Field(min_length=86, max_length=88)]
    hostname: Annotated[str, Field(max_length=253)] | None = None
    agent_version: Annotated[str, Field(max_length=64)] | None = None


class MqttCredentials(_Message):
    """The gateway's own broker account; the password is shown this once only.

    ``client_id`` is the MQTT client identifier to connect with (one session per gateway).
    """

    username: str
    password: str
    client_id: str


class EnrollmentResponse(_Message):
    """Fleet -> gateway: who the gateway now is, how to reach the broker, what to trust.

    ``broker_url`` is ``mqtt://host:port`` or ``mqtts://host:port``; for ``mqtts``
    ``broker_ca_pem`` (when set) is the CA to verify the broker with, otherwise the
    system CAs. ``fleet_signing_key`` is the trust anchor for signed configuration and
    release documents. ``topic_prefix`` is ``hw/v1/{gateway_id}``.
    """

    gateway_id: str
    site_id: str
    mqtt: MqttCredentials
    broker_url: str
    broker_ca_pem: str | None = None
    fleet_signing_key: Base64Key
    topic_prefix: str


class EnrollmentRefusal(_Message):
    """Why an enrollment was refused, in words for the technician."""

    detail: str


class OfflineBundle(_Message):
    """The file ``fleet token bundle`` writes for a USB stick (JSON, keep it secret).

    ``edge enroll --bundle FILE`` stores it, generates the key pair at once and completes
    the enrollment (``POST {fleet_url}/api/v1/enroll`` with ``token``) on the first
    connection. The fleet's signing key in the response must equal ``fleet_signing_key``
    here; a gateway refuses a fleet that answers with another key.
    """

    format: Literal["hazardwatch-enrollment-bundle"] = BUNDLE_FORMAT
    fleet_url: str
    token: Token
    site_id: str
    expires_at: Annotated[float, Field(ge=MIN_TIMESTAMP, le=MAX_TIMESTAMP)]
    fleet_signing_key: Base64Key
    broker_url: str | None = None
    broker_ca_pem: str | None = None
