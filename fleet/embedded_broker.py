"""An in-process MQTT broker (amqtt) for the demo and small sites: nothing to install.

It binds to loopback unless told otherwise (amqtt's own default is every interface) and
enforces the same rules as the generated mosquitto files: users and ``$7$`` hashes from
the same password file, each gateway confined to its own topics and connecting only under
its own client id (its user name). It has no shared subscriptions, so ingest uses one
connection with it. It is for the demo, tests and trials on one host; run mosquitto in
production. It must never deliver a message, retained or live, that the ACL forbids.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from amqtt.adapters import BufferReader, StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.mqtt.connect import ConnectPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from fleet.broker_files import FLEET_USERNAME, read_password_file
from fleet.connect_gate import ConnectRefusedError, read_first_packet
from fleet.credentials import mosquitto_verify
from protocol import GATEWAY_PUBLISHES, GATEWAY_SUBSCRIBES, TOPIC_ROOT

log = logging.getLogger(__name__)

#: CONNACK with return code 0x05, "not authorized".
NOT_AUTHORIZED_CONNACK = bytes([0x20, 0x02, 0x00, 0x05])


def topic_allowed(username: str, topic: str, *, publish: bool, fleet_username: str) -> bool:
    """The ACL of ``fleet.broker_files.acl_text`` as a predicate.

    The fleet may publish and subscribe to anything under the v1 root (wildcards too); a
    gateway may publish only its uplink topics and subscribe only to its downlink topics,
    exactly, under its own id.
    """
    if username == fleet_username:
        return topic.startswith(TOPIC_ROOT + "/")
    kinds = GATEWAY_PUBLISHES if publish else GATEWAY_SUBSCRIBES
    return any(topic == f"{TOPIC_ROOT}/{username}/{kind.value}" for kind in kinds)


class PasswordFileAuth(BaseAuthPlugin):  # type: ignore[misc]
    """Checks user name and password against the mosquitto-format password file.

    The file is reread when its modification time changes, so a new enrollment can
    connect at once. A gateway must use its user name as client id: it could otherwise
    connect under another gateway's id and knock that gateway off.
    """

    @dataclass
    class Config:
        """Where the password file is, and the fleet's user name (any client ids)."""

        password_file: str = ""
        fleet_username: str = FLEET_USERNAME

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._path = Path(self.config.password_file)
        self._users: dict[str, str] = {}
        self._mtime_ns = -1

    def _current_users(self) -> dict[str, str]:
        try:
            mtime_ns = self._path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if mtime_ns != self._mtime_ns:
            self._users = read_password_file(self._path)
            self._mtime_ns = mtime_ns
        return self._users

    async def authenticate(self, *, session: Session) -> bool:
        """Refuse anonymous clients, wrong passwords, borrowed client ids and foreign wills.

        Every refusal is logged at WARNING with the user name (never the password), as
        mosquitto logs its own.
        """
        if session is None:
            return False
        peer = f"{session.remote_address}:{session.remote_port}"
        if not session.username or session.password is None:
            log.warning(
                "refused a client from %s without user name or password (client id %r)",
                peer,
                session.client_id,
            )
            return False
        user = session.username
        if user not in (self.config.fleet_username, session.client_id):
            log.warning(
                "refused %r from %s: it connected with client id %r, not its user name",
                user,
                peer,
                session.client_id,
            )
            return False
        hashed = self._current_users().get(user)
        password = session.password
        if isinstance(password, bytes):
            password = password.decode(errors="replace")
        if hashed is None or not mosquitto_verify(password, hashed):
            reason = "unknown user" if hashed is None else "wrong password"
            log.warning("refused %r from %s: %s", user, peer, reason)
            return False
        # amqtt publishes (and retains) a Last Will without asking the ACL.
        if session.will_flag and not topic_allowed(
            user, session.will_topic or "", publish=True, fleet_username=self.config.fleet_username
        ):
            log.warning(
                "refused %r from %s: its Last Will names topic %r, which it may not publish",
                user,
                peer,
                session.will_topic,
            )
            return False
        return True


class GatewayTopicAcl(BaseTopicPlugin):  # type: ignore[misc]
    """Confines every gateway to its own prefix, like the mosquitto ACL."""

    @dataclass
    class Config:
        """The fleet's own user name (full access to the v1 topics)."""

        fleet_username: str = FLEET_USERNAME

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        """Allow only what ``topic_allowed`` allows."""
        username = session.username if session is not None else None
        if not username or not topic:
            return False
        return topic_allowed(
            username,
            topic,
            publish=action == Action.PUBLISH,
            fleet_username=self.config.fleet_username,
        )


class AclBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with its access holes closed and a clean refusal of what it cannot parse.

    (``PasswordFileAuth`` closes a fourth: amqtt publishes a Last Will without the ACL.)

    - amqtt 0.12 sends a connecting client the retained messages matching *every* session's
      subscriptions, with no ACL check (so a gateway that subscribes to nothing got other
      gateways' health, state and signed configs). Here a client gets only the retained
      messages of filters it holds itself, each topic checked against the ACL as for live
      delivery.
    - amqtt deletes the session of a clean-session client's id, and disconnects a
      connected client of that id, before it authenticates the newcomer: anybody could
      knock a gateway off with its id. Here a client is authenticated before amqtt sees it.
    - The first packet goes through ``fleet.connect_gate``: an MQTT 5 CONNECT gets
      "unacceptable protocol version" instead of hanging amqtt's parser into a traceback,
      and a client that drops the connection mid-handshake is logged in one line.
    """

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        """Judge the first packet, then hand the connection to amqtt with that packet replayed."""
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "an unknown peer"
        try:
            first = await read_first_packet(reader)
        except ConnectRefusedError as exc:
            log.warning("refused a client from %s: %s", where, exc)
            await _close(writer, exc.answer)
            return
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
            log.warning("client from %s sent no complete CONNECT: %s", where, type(exc).__name__)
            await _close(writer, b"")
            return
        if not await self._admitted(first.raw, where, listener_name):
            await _close(writer, NOT_AUTHORIZED_CONNACK)
            return
        try:
            await self._client_connected(
                listener_name, _ReplayReader(first.raw, reader), StreamWriterAdapter(writer)
            )
        except (asyncio.IncompleteReadError, OSError) as exc:
            log.warning("connection from %s ended abruptly: %s", where, type(exc).__name__)

    async def _admitted(self, raw_connect: bytes, where: str, listener_name: str) -> bool:
        """Whether the auth plugins accept this CONNECT (they log their refusals)."""
        try:
            connect = await ConnectPacket.from_stream(BufferReader(raw_connect))
        except Exception as exc:  # amqtt's parser raises a variety of errors on bad input
            log.warning("refused a client from %s: unreadable CONNECT (%s)", where, exc)
            return False
        host, _sep, port = where.rpartition(":")
        candidate = Session()
        candidate.client_id = connect.client_id
        candidate.username = connect.username
        candidate.password = connect.password
        candidate.will_flag = connect.will_flag
        candidate.will_topic = connect.will_topic
        candidate.remote_address = host
        candidate.remote_port = int(port) if port.isdigit() else 0
        admitted: bool = await self._authenticate(candidate, self.listeners_config[listener_name])
        return admitted

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        # On connect amqtt calls this with every filter any session holds: skip the others'.
        held = self._subscriptions.get(topic_filter, [])
        if not any(other.client_id == session.client_id for other, _qos in held):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = [
            handler.mqtt_publish(topic, retained.data, min(qos, retained.qos or qos), retain=True)
            for topic, retained in list(self._retained_messages.items())
            if self._matches(topic, topic_filter)
            and await self._topic_filtering(session, topic=topic, action=Action.RECEIVE)
        ]
        if sends:
            await asyncio.gather(*sends)


class _ReplayReader(StreamReaderAdapter):  # type: ignore[misc]
    """A stream reader that first returns the bytes already read from it (the CONNECT)."""

    def __init__(self, first: bytes, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self._first = first

    async def read(self, n: int = -1) -> bytes:
        if 0 <= n <= len(self._first):
            head, self._first = self._first[:n], self._first[n:]
            return head
        head, self._first = self._first, b""
        if head and n == -1:
            return head
        data: bytes = await super().read(n if n == -1 else n - len(head))
        return head + data


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _close(writer: asyncio.StreamWriter, answer: bytes) -> None:
    """Send ``answer`` (if any) and close, ignoring a peer that is already gone."""
    try:
        if answer:
            writer.write(answer)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    except OSError:
        pass


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` using the password file in ``broker_dir``.

    Use as an async context manager; it listens once ``__aenter__`` returns.
    """

    def __init__(self, broker_dir: Path, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                f"{__name__}.PasswordFileAuth": {
                    "password_file": str(broker_dir / "passwd"),
                    "fleet_username": FLEET_USERNAME,
                },
                f"{__name__}.GatewayTopicAcl": {"fleet_username": FLEET_USERNAME},
            },
        }
        self._broker: Broker | None = None

    async def __aenter__(self) -> EmbeddedBroker:
        self._broker = AclBroker(self._config)
        await self._broker.start()
        # Said at every start: this broker is not the production path.
        log.log(
            logging.INFO if _is_loopback(self.host) else logging.WARNING,
            "embedded MQTT broker (amqtt) listening on %s:%d: for the demo, tests and trials "
            "on one host; run mosquitto in production (see `fleet broker-config`)",
            self.host,
            self.port,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
