"""Rollouts through a real mosquitto with simulated OTA gateways, for tests and benches.

``RolloutRig`` holds a fleet (``fleet_with_mosquitto``), the manual clock its rollout
scheduler runs on, and the simulated gateways it connects.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from drivers.clock import ManualClock
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import Rollout, RolloutState
from hardware_sim.harness.mosquitto import FleetUnderTest, auth
from hardware_sim.harness.release_rest import register_release
from hardware_sim.harness.waiting import wait_for
from hardware_sim.sim_ota_gateway import Fetch, OtaPlan, SimulatedOtaGateway
from ota.manifest import ReleaseFile
from protocol import EnrollmentResponse

#: The files of the release a rig publishes (``RolloutRig.release``).
WHEELS = {
    "hazardwatch-1.4.0-py3-none-any.whl": b"hazardwatch wheel " * 200,
    "tinydep-2.0-py3-none-any.whl": b"dependency wheel " * 50,
}


@dataclass
class RolloutRig:
    """A fleet with its mosquitto, a manual clock for rollout deadlines, simulated gateways."""

    fleet: FleetUnderTest
    clock: ManualClock
    stack: AsyncExitStack

    @property
    def admin(self) -> dict[str, str]:
        """Headers of the fleet's admin token."""
        return auth(self.fleet.admin_token)

    def fetch(self, enrolled: EnrollmentResponse, password: str | None = None) -> Fetch:
        """How the gateway ``enrolled`` downloads a release file: over REST, its own credentials.

        ``password`` instead of its own: the fleet refuses the download (401).
        """
        credentials = httpx.BasicAuth(enrolled.mqtt.username, password or enrolled.mqtt.password)

        async def fetch(version: str, file: ReleaseFile) -> bytes:
            answer = await self.fleet.http.get(
                f"/api/v1/releases/{version}/files/{file.name}", auth=credentials
            )
            answer.raise_for_status()
            return answer.content

        return fetch

    async def connect(
        self,
        enrolled: EnrollmentResponse,
        plan: OtaPlan = OtaPlan.APPLY,
        fetch: Fetch | None = None,
        retry_after_s: float = 60.0,
    ) -> SimulatedOtaGateway:
        """A simulated gateway with the enrolled credentials, connected.

        ``fetch`` downloads its release files (default ``self.fetch(enrolled)``); a failed
        download is tried again after ``retry_after_s``.
        """
        broker = BrokerConnection(
            enrolled.broker_url, enrolled.mqtt.username, enrolled.mqtt.password
        )
        gateway = SimulatedOtaGateway(
            enrolled.gateway_id,
            broker,
            enrolled.fleet_signing_key,
            plan,
            fetch or self.fetch(enrolled),
            retry_after_s,
        )
        return await self.stack.enter_async_context(gateway)

    async def release(self) -> None:
        """Publish release 1.4.0 (``WHEELS``)."""
        await register_release(self.fleet.http, self.admin, WHEELS)

    async def rollout(self, gateways: Sequence[str], **body: Any) -> int:
        """Start a rollout of 1.4.0 to ``gateways`` over REST (``body`` adds fields); its id."""
        answer = await self.fleet.http.post(
            "/api/v1/rollouts",
            json={"release": "1.4.0", "gateways": list(gateways)} | body,
            headers=self.admin,
        )
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    def get(self, rollout_id: int) -> Rollout:
        """The rollout as stored now."""
        return self.fleet.repository.ota.get_rollout(rollout_id)

    async def until(self, rollout_id: int, state: RolloutState, within: float = 30) -> Rollout:
        """Wait until the rollout is in ``state``; the rollout then."""
        await wait_for(lambda: self.get(rollout_id).state is state, within, f"{state.value}")
        return self.get(rollout_id)
