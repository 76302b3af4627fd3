"""Enrollment of this gateway with the county fleet: its key pair, identity and trust anchor.

The gateway's Ed25519 private key is generated here, written with mode 0600 and never
leaves the device: only the public key and a signature made with it go to the fleet.
Every file is written atomically with mode 0600, so a power cut leaves the old state or
the new one, never half a credential. Never imports ``fleet``.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from edge_agent.atomic_file import write_atomic
from protocol import EnrollmentRequest, EnrollmentResponse, OfflineBundle, enrollment_message
from protocol.broker_url import parse_broker_url

KEY_FILE = "gateway_key.pem"
ENROLLMENT_FILE = "enrollment.json"
PENDING_FILE = "enrollment_pending.json"
ENROLL_PATH = "/api/v1/enroll"

EnrollmentState = Literal["enrolled", "pending", "refused", "none"]


class EnrollmentError(Exception):
    """Enrollment did not happen; the message says why in the technician's words."""


class EnrollmentRefusedError(EnrollmentError):
    """The fleet (or the bundle itself) refused: retrying the same token cannot work."""


class FleetUnreachableError(EnrollmentError):
    """The fleet could not be reached or failed; trying again later may work."""


class StoredEnrollment(EnrollmentResponse):
    """What the gateway keeps of its enrollment (``enrollment.json``, mode 0600).

    ``fleet_signing_key`` is the trust anchor for signed configuration and releases.
    """

    fleet_url: str
    enrolled_at: float


def broker_endpoint(enrollment: StoredEnrollment) -> tuple[str, int, ssl.SSLContext | None]:
    """Host, port and TLS context of the county's broker (None: plain ``mqtt://``).

    With the fleet's CA in the enrollment only that CA is trusted, otherwise the system's.
    Raises ValueError (naming the URL) for a broker URL that is not one.
    """
    scheme, host, port = parse_broker_url(enrollment.broker_url)
    if scheme != "mqtts":
        return host, port, None
    return host, port, ssl.create_default_context(cadata=enrollment.broker_ca_pem or None)


class PendingEnrollment(OfflineBundle):
    """An offline bundle waiting for the first connection; ``refused`` once the fleet said no."""

    refused: str | None = None


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, fsynced, the directory too."""
    write_atomic(path, data, 0o600)


def load_or_create_key(data_dir: Path) -> Ed25519PrivateKey:
    """The gateway's private key from ``data_dir``, generated on first use."""
    path = data_dir / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            msg = f"{path} is not an Ed25519 private key; move it away to enroll afresh"
            raise EnrollmentError(msg)
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key as standard base64, as the fleet registers it."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def signed_request(key: Ed25519PrivateKey, token: str, agent_version: str) -> EnrollmentRequest:
    """The enrollment request for ``token``, proving possession of ``key``."""
    public_key = public_key_b64(key)
    signature = base64.b64encode(key.sign(enrollment_message(token, public_key))).decode()
    return EnrollmentRequest(
        token=token,
        public_key=public_key,
        signature=signature,
        hostname=socket.gethostname()[:253],
        agent_version=agent_version,
    )


def post_enrollment(
    fleet_url: str, request: EnrollmentRequest, timeout_s: float = 15.0
) -> EnrollmentResponse:
    """POST the request to the fleet and return its answer.

    Raises:
        EnrollmentRefusedError: the fleet answered 4xx (token unknown, used, expired ...).
        FleetUnreachableError: no answer, or a server error.
    """
    url = fleet_url.rstrip("/") + ENROLL_PATH
    http_request = urllib.request.Request(
        url,
        data=request.model_dump_json().encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout_s) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        detail = _detail(exc.read()) or exc.reason
        if 400 <= exc.code < 500:
            msg = f"{detail} (HTTP {exc.code} from {fleet_url})"
            raise EnrollmentRefusedError(msg) from None
        msg = f"the fleet at {fleet_url} failed (HTTP {exc.code}): {detail}; try again later"
        raise FleetUnreachableError(msg) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        msg = f"cannot reach the fleet at {fleet_url}: {reason}"
        raise FleetUnreachableError(msg) from None
    try:
        return EnrollmentResponse.model_validate_json(body)
    except ValidationError as exc:
        msg = f"the fleet at {fleet_url} answered something that is not an enrollment: {exc}"
        raise FleetUnreachableError(msg) from None


def _detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:200]
    return str(detail) if detail is not None else ""


def load_enrollment(data_dir: Path) -> StoredEnrollment | None:
    """The gateway's stored enrollment, or None when it is not enrolled (yet)."""
    path = data_dir / ENROLLMENT_FILE
    if not path.exists():
        return None
    return StoredEnrollment.model_validate_json(path.read_bytes())


def load_pending(data_dir: Path) -> PendingEnrollment | None:
    """The stored offline bundle waiting for the first connection, if any."""
    path = data_dir / PENDING_FILE
    if not path.exists():
        return None
    return PendingEnrollment.model_validate_json(path.read_bytes())


def enrollment_state(data_dir: Path) -> EnrollmentState:
    """Whether the gateway is enrolled, waiting on a bundle, refused, or not enrolled at all."""
    if (data_dir / ENROLLMENT_FILE).exists():
        return "enrolled"
    pending = load_pending(data_dir)
    if pending is None:
        return "none"
    return "refused" if pending.refused else "pending"


def _refuse_if_enrolled(data_dir: Path) -> None:
    existing = load_enrollment(data_dir)
    if existing is not None:
        msg = (
            f"this gateway is already enrolled as {existing.gateway_id} (site "
            f"{existing.site_id}); to enroll it afresh, stop the agent and remove "
            f"{data_dir / ENROLLMENT_FILE}"
        )
        raise EnrollmentError(msg)


def enroll_online(
    data_dir: Path,
    fleet_url: str,
    token: str,
    agent_version: str,
    expected_signing_key: str | None = None,
) -> StoredEnrollment:
    """Redeem ``token`` at the fleet and store the identity it returns.

    With ``expected_signing_key`` (from an offline bundle) a fleet answering with another
    trust anchor is refused: the bundle said which fleet to trust.
    """
    _refuse_if_enrolled(data_dir)
    key = load_or_create_key(data_dir)
    try:
        request = signed_request(key, token, agent_version)
    except ValidationError:
        msg = "that is not an enrollment token: check that it was copied completely"
        raise EnrollmentRefusedError(msg) from None
    response = post_enrollment(fleet_url, request)
    if expected_signing_key is not None and response.fleet_signing_key != expected_signing_key:
        msg = (
            f"the fleet at {fleet_url} presents signing key {response.fleet_signing_key}, "
            f"not the {expected_signing_key} the bundle names; not trusting it"
        )
        raise EnrollmentRefusedError(msg)
    stored = StoredEnrollment(**response.model_dump(), fleet_url=fleet_url, enrolled_at=time.time())
    write_private(data_dir / ENROLLMENT_FILE, stored.model_dump_json(indent=2).encode())
    return stored


def store_bundle(data_dir: Path, bundle_file: Path, now: float) -> PendingEnrollment:
    """Check an offline bundle, generate the key pair and keep the bundle for the first connection.

    Raises:
        EnrollmentRefusedError: the file is not a bundle, or its token has expired.
        EnrollmentError: the gateway is already enrolled.
    """
    _refuse_if_enrolled(data_dir)
    try:
        bundle = OfflineBundle.model_validate_json(bundle_file.read_bytes())
    except OSError as exc:
        msg = f"cannot read {bundle_file}: {exc.strerror}"
        raise EnrollmentRefusedError(msg) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        msg = (
            f"{bundle_file} is not an enrollment bundle written by `fleet token bundle` "
            f"({where}: {first['msg']})"
        )
        raise EnrollmentRefusedError(msg) from None
    if now >= bundle.expires_at:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(bundle.expires_at))
        msg = f"this bundle's enrollment token expired at {when}; ask the county for a new one"
        raise EnrollmentRefusedError(msg)
    load_or_create_key(data_dir)
    pending = PendingEnrollment(**bundle.model_dump())
    write_private(data_dir / PENDING_FILE, pending.model_dump_json(indent=2).encode())
    return pending


def complete_pending(data_dir: Path, agent_version: str) -> StoredEnrollment:
    """Redeem the stored bundle at its fleet; on refusal remember why and stop trying.

    Raises:
        EnrollmentRefusedError: the fleet refused (recorded in the pending file).
        FleetUnreachableError: try again later.
    """
    pending = load_pending(data_dir)
    if pending is None:
        msg = "no offline bundle is waiting; enroll with `edge enroll`"
        raise EnrollmentError(msg)
    if pending.refused:
        raise EnrollmentRefusedError(pending.refused)
    try:
        stored = enroll_online(
            data_dir, pending.fleet_url, pending.token, agent_version, pending.fleet_signing_key
        )
    except EnrollmentRefusedError as exc:
        refused = pending.model_copy(update={"refused": str(exc)})
        write_private(data_dir / PENDING_FILE, refused.model_dump_json(indent=2).encode())
        raise
    (data_dir / PENDING_FILE).unlink()
    return stored
