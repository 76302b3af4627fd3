"""A real mosquitto for tests: a free port, its own config, the fleet's generated access files.

``start_mosquitto`` writes the configuration with ``fleet.broker_files.mosquitto_conf`` (the
same password file and ACL the fleet maintains), optionally adds a TLS listener with a
certificate from a throwaway CA made here, and returns once the ports accept connections.
``fleet_with_mosquitto`` adds the fleet app (lifespan running) connected to it.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from fleet.broker_files import FleetAccount, Listener, mosquitto_conf, write_access_files
from fleet.ingest import IngestWorker
from fleet.main import create_app
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import Role
from fleet.rollouts import RolloutTiming
from fleet.settings import FleetSettings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_until
from hardware_sim.simgateway import SimulatedGateway, enrollment_request
from protocol import EnrollmentResponse

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A CA certificate and a server key pair signed by it (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path, ca_name: str, hostname: str = "localhost") -> TlsFiles:
    """Create a throwaway CA and a server certificate for ``hostname`` and 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    files.key_file.chmod(0o600)
    return files


class BrokerUrls:
    """The URLs of a test broker's listeners, from its ports."""

    port: int
    fleet_port: int
    tls_port: int | None

    @property
    def url(self) -> str:
        """Plain MQTT URL of the gateway listener."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def fleet_url(self) -> str:
        """The fleet's own listener (the fleet account only, client ids kept)."""
        return f"mqtt://127.0.0.1:{self.fleet_port}"

    @property
    def tls_url(self) -> str:
        """MQTT over TLS (the certificate names localhost)."""
        return f"mqtts://localhost:{self.tls_port}"


@dataclass
class Mosquitto(BrokerUrls):
    """A running mosquitto process and how to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    tls_port: int | None
    pid_file: Path
    log_file: Path
    fleet_port: int

    def log(self) -> str:
        """What mosquitto logged so far."""
        return self.log_file.read_text(errors="replace")

    def restart(self) -> None:
        """Start again after ``stop``, same config and ports; return once it listens."""
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.pid_file.parent / "mosquitto.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ports = (self.port, self.tls_port, self.fleet_port)
        wait_until(lambda: all(port_open(p) for p in ports if p), 10, "mosquitto to listen again")

    def stop(self) -> None:
        """Terminate and reap the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_mosquitto(broker_dir: Path, work_dir: Path, tls: TlsFiles | None = None) -> Mosquitto:
    """Start mosquitto using the access files in ``broker_dir``; return once it listens."""
    work_dir.mkdir(parents=True, exist_ok=True)
    port, fleet_port = free_port(), free_port()
    listeners = [Listener(port), Listener(fleet_port, fleet=True)]
    tls_port = None
    if tls is not None:
        tls_port = free_port()
        listeners.append(Listener(tls_port, certfile=tls.cert_file, keyfile=tls.key_file))
    pid_file = work_dir / "mosquitto.pid"
    conf = mosquitto_conf(broker_dir, listeners, tls.ca_file if tls else None)
    conf += f"pid_file {pid_file}\nlog_dest stderr\nlog_type all\npersistence false\n"
    if os.geteuid() == 0:
        # As root mosquitto would switch to user 'mosquitto', which cannot read the test's
        # private temporary directory.
        conf += "user root\n"
    conf_file = work_dir / "mosquitto.conf"
    conf_file.write_text(conf)
    log_file = work_dir / "mosquitto.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf_file)], stdout=log, stderr=subprocess.STDOUT
        )
    broker = Mosquitto(process, port, tls_port, pid_file, log_file, fleet_port)
    try:
        wait_until(
            lambda: (
                process.poll() is None
                and all(port_open(p) for p in (port, tls_port, fleet_port) if p)
                and pid_file.exists()
            ),
            10,
            "mosquitto to listen",
        )
    except AssertionError:
        broker.stop()
        raise AssertionError(broker.log()) from None
    return broker


@contextlib.contextmanager
def running_mosquitto(
    broker_dir: Path, work_dir: Path, tls: TlsFiles | None = None
) -> Iterator[Mosquitto]:
    """``start_mosquitto`` as a context manager that always stops it."""
    broker = start_mosquitto(broker_dir, work_dir, tls)
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class FleetUnderTest:
    """The fleet app (lifespan running, ingest connected to a real mosquitto) and helpers."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: FleetSettings
    mosquitto: Mosquitto
    admin_token: str

    @property
    def ingest(self) -> IngestWorker:
        """The in-process ingest worker."""
        worker: IngestWorker = self.app.state.ingest
        return worker

    @property
    def repository(self) -> SQLiteRepository:
        """The fleet's repository."""
        repository: SQLiteRepository = self.app.state.repository
        return repository

    def api_token(self, role: Role, name: str | None = None) -> str:
        """A new API token with ``role``."""
        _token, secret = self.repository.create_api_token(name or role.value, role, time.time())
        return secret

    async def enroll(self, site_id: str = "creek-village") -> EnrollmentResponse:
        """Create a token as admin and redeem it like a gateway does."""
        created = await self.http.post(
            "/api/v1/enrollment-tokens", json={"site_id": site_id}, headers=auth(self.admin_token)
        )
        assert created.status_code == 201, created.text
        request = enrollment_request(created.json()["token"])
        answer = await self.http.post("/api/v1/enroll", json=request.model_dump())
        assert answer.status_code == 201, answer.text
        return EnrollmentResponse.model_validate(answer.json())

    def gateway(self, enrolled: EnrollmentResponse, **options: float) -> SimulatedGateway:
        """A simulated gateway using the credentials and broker from its enrollment."""
        ca_file = None
        if enrolled.broker_ca_pem:
            ca_file = self.settings.data_dir / f"{enrolled.gateway_id}-ca.pem"
            ca_file.write_text(enrolled.broker_ca_pem)
        connection = BrokerConnection(
            enrolled.broker_url, enrolled.mqtt.username, enrolled.mqtt.password, ca_file
        )
        window = int(options.pop("window", 4))
        return SimulatedGateway(enrolled.gateway_id, connection, window=window, **options)


def auth(token: str) -> dict[str, str]:
    """The header that carries an API token."""
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def fleet_with_mosquitto(
    tmp_path: Path, tls: TlsFiles | None = None, rollout_timing: RolloutTiming | None = None
) -> AsyncIterator[FleetUnderTest]:
    """A mosquitto using the fleet's access files, and the fleet app connected to it.

    ``rollout_timing`` gives the rollout scheduler its clock and tick.
    """
    data_dir = tmp_path / "fleet"
    broker_dir = FleetSettings(data_dir=data_dir).broker_dir
    write_access_files(broker_dir, FleetAccount.load_or_create(data_dir), [])
    with running_mosquitto(broker_dir, tmp_path / "mosquitto", tls) as broker:
        settings = FleetSettings(
            data_dir=data_dir,
            broker="external",
            mqtt_url=broker.fleet_url,
            public_broker_url=broker.tls_url if tls else broker.url,
            public_broker_ca=tls.ca_file if tls else None,
            mosquitto_pid_file=broker.pid_file,
        )
        app = create_app(settings, rollout_timing)
        async with app.router.lifespan_context(app):
            worker: IngestWorker = app.state.ingest
            await asyncio.wait_for(worker.ready.wait(), 10)
            repository: SQLiteRepository = app.state.repository
            _token, admin = repository.create_api_token("admin", Role.ADMIN, time.time())
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as http:
                yield FleetUnderTest(app, http, settings, broker, admin)
