"""The Kannel harness reads back what real Kannel sent its fake SMSC, by each message's coding.

Long messages arrive at the fake SMSC in parts (UDH); a part in 7-bit text must not be read
as UCS-2, nor a UCS-2 one as text. A port another program took before bearerbox could
bind it fails the start at once, with bearerbox's own words.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from hardware_sim.harness.kannel import BOX_START_S, Kannel, kannel_installed
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


def test_a_box_that_cannot_start_fails_at_once_quoting_what_it_printed(tmp_path: Path) -> None:
    """Another program holds the smsbox port: bearerbox panics; the start says so at once."""
    kannel = Kannel(tmp_path, "http://127.0.0.1:9/mo?key=unused")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", kannel.box_port))
        squatter.listen()
        began = time.monotonic()
        with pytest.raises(AssertionError) as failed:
            kannel.start()
        took = time.monotonic() - began
    message = str(failed.value)
    assert "bearerbox exited with" in message
    assert "bearerbox.out:" in message
    assert f"Could not open smsbox port {kannel.box_port}" in message  # bearerbox's words
    assert took < BOX_START_S / 2  # not the whole wait for a dead process
