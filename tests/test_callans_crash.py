"""叫应 across a crash: ``fleet serve`` SIGKILLed mid-escalation resumes it after restart.

First killed between committing a call as planned and sending it: the restarted fleet
sends it (no call lost). Then killed right after a call went out: the restarted fleet does
not send it again before its repeat interval, repeats it on time, and escalates to the
township at the village deadline. Real subprocesses, real SQLite, a local HTTP robot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.repository import NewGateway, Received
from fleet.roster import PersonIn, Tier
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_until
from hardware_sim.harness.webhook_inbox import WebhookInbox
from ota.crash_points import crash_test_env
from protocol import EventBatch, EventRow

SITE = "creek-village"
GW = "gw-0123456789"
REPEAT_S, VILLAGE_DEADLINE_S = 10.0, 15.0
MOBILE = "+8613812345678"


class FleetServe:
    """``fleet serve`` (embedded broker on a free port) as a subprocess we can SIGKILL."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "fleet.log"
        self.config = data_dir / "escalation.toml"
        self.config.write_text(
            "tick_s = 0.2\n[policy.levels.red]\n"
            f"repeat_s = {REPEAT_S}\n"
            f'tiers = [{{tier = "village", deadline_s = {VILLAGE_DEADLINE_S}}}, '
            '{tier = "township", deadline_s = 600}]\n'
        )

    def start(self, **env: str) -> None:
        command = [
            *(sys.executable, "-m", "fleet.cli", "serve", "--data-dir", str(self.data_dir)),
            *("--port", str(self.port), "--broker-port", str(free_port())),
            *("--escalation", str(self.config), "--log-level", "debug"),
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env={**os.environ, **env}
            )
        wait_until(lambda: port_open(self.port), 30, "the fleet's REST port")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def robots() -> Iterator[WebhookInbox]:
    with WebhookInbox().running() as inbox:
        yield inbox


def test_a_fleet_killed_mid_escalation_resumes_it_losing_no_call_and_doubling_none(
    tmp_path: Path, robots: WebhookInbox
) -> None:
    data_dir = tmp_path / "fleet"
    data_dir.mkdir()
    repository = SQLiteRepository(data_dir / "fleet.sqlite")
    now = time.time()
    _t, secret = repository.create_enrollment_token(SITE, now + 60, None, None, now)
    repository.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), now)
    repository.escalation.replace_roster(
        SITE,
        [
            PersonIn(
                Tier.VILLAGE, "王建国", "群测群防员", mobile=MOBILE, webhook=robots.url("village")
            ),
            PersonIn(Tier.TOWNSHIP, "李敏", "乡镇值班", webhook=robots.url("township")),
        ],
        now,
    )
    fleet = FleetServe(data_dir)
    hold = tmp_path / "holding"
    try:
        fleet.start(**crash_test_env("fleet.escalation.send", hold))
        row = EventRow(seq=1, ts=time.time(), kind="alarm", subject="slope", level=4, detail={})
        batch = EventBatch(gateway_id=GW, first_seq=1, last_seq=1, rows=[row])
        repository.commit([Received(GW, time.time(), batch)])

        # 1. killed with the village call committed as planned, not yet sent
        wait_until(hold.exists, 20, "the fleet to plan the village call")
        fleet.kill()
        assert robots.to("village") == []
        alarm = repository.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=1)[0]
        escalation = repository.escalation.escalations_of(alarm.id)[0]
        (planned,) = repository.escalation.calls(escalation.id)
        assert (planned.status, planned.channel) == ("planned", "webhook")

        # the restarted fleet sends it: no call lost
        fleet.start()
        wait_until(lambda: len(robots.to("village")) == 1, 20, "the planned call to be sent")
        # 2. killed right after the call went out and was recorded as sent (a kill between
        # the robot taking it and the record is the one window that doubles a message)
        wait_until(
            lambda: repository.escalation.calls(escalation.id)[0].status == "sent",
            20,
            "the call to be recorded as sent",
        )
        fleet.kill()
        fleet.start()
        # the repeat comes, and not before REPEAT_S after the call was planned
        wait_until(lambda: len(robots.to("village")) == 2, 30, "the repeated village call")
        assert robots.times("village")[1] >= planned.planned_at + REPEAT_S
        wait_until(lambda: len(robots.to("township")) == 1, 30, "the township call")
        assert robots.times("township")[0] >= escalation.started_at + VILLAGE_DEADLINE_S
        assert len(robots.to("village")) == 2  # one sent after each restart, none doubled

        expected = [
            ("王建国 (village)", "sent"),
            ("王建国 (village)", "sent"),
            ("李敏 (township)", "sent"),
        ]
        wait_until(
            lambda: (
                [(c.person, c.status) for c in repository.escalation.calls(escalation.id)]
                == expected
            ),
            20,
            "every call recorded as sent",
        )
        kinds = [s["kind"] for s in repository.escalation.record(escalation.id)]
        assert kinds == ["started", "resumed", "call_sent", "call_sent", "escalated", "call_sent"]
    finally:
        fleet.stop()
        repository.close()
    log = fleet.log.read_text()
    assert "calling the village tier" in log  # the log is there, at debug level
    for secret in (MOBILE, MOBILE[1:], "/robot/"):  # a robot URL's path is its key
        assert secret not in log
