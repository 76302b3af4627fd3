"""The Kannel harness reads back what real Kannel sent its fake SMSC, by each message's coding.

Long messages arrive at the fake SMSC in parts (UDH); a part in 7-bit text must not be read
as UCS-2, nor a UCS-2 one as text. A port taken by another program between choosing it and
bearerbox binding it must not fail the tests that need Kannel.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from hardware_sim.harness.kannel import Kannel, kannel_installed
from hardware_sim.harness.waiting import wait_until

pytestmark = pytest.mark.skipif(
    not kannel_installed(), reason="Kannel is not installed (./dev setup installs it)"
)

LONG_LATIN = "Creek village: red warning, evacuate to the school now. " * 4  # 3 parts in 7-bit
LONG_CHINESE = "【HazardWatch 红色预警】站点 creek-village 请立即撤离到学校。" * 3  # UCS-2 parts


def test_long_messages_are_reassembled_and_decoded_by_their_own_coding(tmp_path: Path) -> None:
    kannel = Kannel(tmp_path, "http://127.0.0.1:9/mo?key=unused")
    kannel.start()
    try:
        for to, text, coding in (
            ("8613800000001", LONG_LATIN, "0"),
            ("8613800000002", LONG_CHINESE, "2"),
            ("8613800000003", "short text", "0"),
        ):
            answer = httpx.get(
                kannel.sendsms_url,
                params={"username": "fleet", "password": "fleet-password", "to": to,
                        "from": "10086", "text": text, "coding": coding, "charset": "UTF-8"},
            )  # fmt: skip
            assert answer.status_code == 202, answer.text
        wait_until(lambda: len(kannel.received()) == 3, 20, "three messages at the fake SMSC")
        got = {sms.to: sms.text for sms in kannel.received()}
        assert got == {
            "8613800000001": LONG_LATIN,
            "8613800000002": LONG_CHINESE,
            "8613800000003": "short text",
        }
        assert any("udh" in log.read_text() for log in kannel.phone_logs)  # sent in parts
    finally:
        kannel.stop()


def test_a_port_taken_before_bearerbox_binds_it_is_replaced_and_kannel_still_sends(
    tmp_path: Path,
) -> None:
    kannel = Kannel(tmp_path, "http://127.0.0.1:9/mo?key=unused")
    with socket.socket() as squatter:  # another program takes the smsbox port first
        squatter.bind(("127.0.0.1", kannel.box_port))
        squatter.listen()
        taken = kannel.box_port
        kannel.start()
        try:
            assert kannel.box_port != taken
            answer = httpx.get(
                kannel.sendsms_url,
                params={"username": "fleet", "password": "fleet-password",
                        "to": "8613800000009", "from": "10086", "text": "still here"},
            )  # fmt: skip
            assert answer.status_code == 202, answer.text
            wait_until(kannel.received, 20, "the message at the fake SMSC")
            assert [sms.text for sms in kannel.received()] == ["still here"]
        finally:
            kannel.stop()
