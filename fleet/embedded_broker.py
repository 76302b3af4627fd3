"""An in-process MQTT broker (amqtt) for the demo and small sites: nothing to install.

It binds to loopback unless told otherwise (amqtt's own default is every interface) and
enforces the same rules as the generated mosquitto files: users and ``$7$`` hashes from
the same password file, each gateway confined to its own topics and connecting only under
its own client id (its user name). It has no shared subscriptions, so ingest uses one
connection with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from fleet.broker_files import FLEET_USERNAME, read_password_file
from fleet.credentials import mosquitto_verify
from protocol import GATEWAY_PUBLISHES, GATEWAY_SUBSCRIBES, TOPIC_ROOT

log = logging.getLogger(__name__)


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
        """Refuse anonymous clients, wrong passwords and borrowed client ids."""
        if session is None or not session.username or session.password is None:
            return False
        if session.username not in (self.config.fleet_username, session.client_id):
            log.warning(
                "refused %s: it connected with client id %r, not its user name",
                session.username,
                session.client_id,
            )
            return False
        hashed = self._current_users().get(session.username)
        password = session.password
        if isinstance(password, bytes):
            password = password.decode(errors="replace")
        return hashed is not None and mosquitto_verify(password, hashed)


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
        self._broker = Broker(self._config)
        await self._broker.start()
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
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
