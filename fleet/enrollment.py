"""Enrollment: one-time site tokens, offline bundles, and redeeming a token for an identity.

Redeeming checks the gateway's proof that it holds its new private key, uses the token
and registers the gateway in one transaction, then rewrites the broker's access files
and reloads mosquitto, so the new MQTT credentials work without a restart.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from fleet.broker_files import (
    FleetAccount,
    access_files_lock,
    reload_mosquitto,
    write_access_files,
)
from fleet.credentials import mosquitto_hash, new_secret
from fleet.repository import EnrollmentToken, NewGateway, Repository
from fleet.signing import SigningKey
from ota.document import verify_signature
from protocol import (
    TOPIC_ROOT,
    EnrollmentRequest,
    EnrollmentResponse,
    MqttCredentials,
    OfflineBundle,
    enrollment_message,
)

log = logging.getLogger(__name__)

#: Default lifetime of an online enrollment token, and of one written to a USB bundle.
TOKEN_TTL_S = 24 * 3600.0
BUNDLE_TTL_S = 30 * 24 * 3600.0


class InvalidProofError(PermissionError):
    """The enrollment signature does not verify with the public key sent."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """What gateways are told about the broker: URL and, for mqtts, the CA to trust."""

    url: str
    ca_pem: str | None = None


class Enrollment:
    """Issues enrollment tokens and bundles and turns a redeemed token into a gateway."""

    def __init__(
        self,
        repository: Repository,
        signing_key: SigningKey,
        fleet_account: FleetAccount,
        broker: BrokerAddress,
        broker_dir: Path,
        fleet_url: str,
        mosquitto_pid_file: Path | None = None,
    ) -> None:
        self.repository = repository
        self.signing_key = signing_key
        self.fleet_account = fleet_account
        self.broker = broker
        self.broker_dir = broker_dir
        self.fleet_url = fleet_url
        self.mosquitto_pid_file = mosquitto_pid_file

    def create_token(
        self, site_id: str, ttl_s: float, created_by: str | None, note: str | None, now: float
    ) -> tuple[EnrollmentToken, str]:
        """A new one-time token for ``site_id`` valid for ``ttl_s``; returns it and its secret."""
        return self.repository.create_enrollment_token(site_id, now + ttl_s, created_by, note, now)

    def bundle(
        self, site_id: str, ttl_s: float, created_by: str | None, note: str | None, now: float
    ) -> OfflineBundle:
        """A new token packed with what a gateway needs to finish enrolling on its own."""
        token, secret = self.create_token(site_id, ttl_s, created_by, note, now)
        return OfflineBundle(
            fleet_url=self.fleet_url,
            token=secret,
            site_id=site_id,
            expires_at=token.expires_at,
            fleet_signing_key=self.signing_key.public_key_b64,
            broker_url=self.broker.url,
            broker_ca_pem=self.broker.ca_pem,
        )

    def enroll(self, request: EnrollmentRequest, now: float) -> EnrollmentResponse:
        """Redeem the request's token; raises InvalidProofError or EnrollmentRefusedError."""
        message = enrollment_message(request.token, request.public_key)
        if not verify_signature(request.public_key, message, request.signature):
            msg = (
                "the signature does not verify with public_key: sign "
                "enrollment_message(token, public_key) with the gateway's new Ed25519 key"
            )
            raise InvalidProofError(msg)
        gateway_id = f"gw-{secrets.token_hex(5)}"
        password = new_secret()
        gateway = self.repository.redeem_enrollment_token(
            request.token,
            NewGateway(
                gateway_id=gateway_id,
                public_key=request.public_key,
                mqtt_password_hash=mosquitto_hash(password),
                hostname=request.hostname,
                agent_version=request.agent_version,
            ),
            now,
        )
        self.sync_broker()
        log.info("enrolled gateway %s for site %s", gateway.id, gateway.site_id)
        return EnrollmentResponse(
            gateway_id=gateway.id,
            site_id=gateway.site_id,
            mqtt=MqttCredentials(username=gateway.id, password=password, client_id=gateway.id),
            broker_url=self.broker.url,
            broker_ca_pem=self.broker.ca_pem,
            fleet_signing_key=self.signing_key.public_key_b64,
            topic_prefix=f"{TOPIC_ROOT}/{gateway.id}",
        )

    def sync_broker(self) -> None:
        """Rewrite the broker's password file and ACL, and make mosquitto reread them."""
        with access_files_lock(self.broker_dir):
            accounts = self.repository.broker_accounts()
            write_access_files(self.broker_dir, self.fleet_account, accounts)
        if self.mosquitto_pid_file is not None and not reload_mosquitto(self.mosquitto_pid_file):
            log.error(
                "could not signal mosquitto (pid file %s); new gateways can connect only "
                "after it reloads",
                self.mosquitto_pid_file,
            )
