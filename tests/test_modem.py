"""The gateway's SMS modem client against the simulated modem on a real socat pty."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial

from drivers.at_channel import AtChannel, InfoLine
from drivers.modem import IncomingSms, ModemError, SmsModem
from drivers.sms_text import split_for_sms, to_ucs2_hex
from hardware_sim.harness.waiting import wait_for
from hardware_sim.modem import SentSms, SimulatedModem
from hardware_sim.pty_link import PtyPair

VILLAGE_HEAD = "+8613800000001"
MONITOR = "+8613800000002"
WARNING = "【HazardWatch 红色预警】青石村滑坡监测点位移速率超限，请立即组织转移。回复1确认"  # noqa: RUF001 - Chinese punctuation
TIMEOUT_S = 2.0
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def sim(pty_pair: PtyPair) -> AsyncIterator[SimulatedModem]:
    async with SimulatedModem(pty_pair.device_end, clock=lambda: 1_796_270_700.0) as modem:
        yield modem


@pytest.fixture
async def modem(pty_pair: PtyPair, sim: SimulatedModem) -> AsyncIterator[SmsModem]:
    async with SmsModem(str(pty_pair.agent_end), timeout_s=TIMEOUT_S) as client:
        yield client


async def test_open_leaves_the_modem_in_ucs2_text_mode_without_echo(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    assert (sim.text_mode, sim.charset, sim.data_coding, sim.echo) == (True, "UCS2", 8, False)


async def test_a_chinese_warning_reaches_the_outbox_as_sent(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    ref = await modem.send_sms(VILLAGE_HEAD, WARNING)

    assert sim.outbox == [SentSms(VILLAGE_HEAD, WARNING, ref)]
    # In UCS2 mode the number goes hex-encoded too, as real modems require.
    assert f'AT+CMGS="{to_ucs2_hex(VILLAGE_HEAD)}"' in sim.commands


async def test_a_long_text_goes_as_several_sms_of_at_most_70_characters(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    text = WARNING + "转移路线：沿村东道路前往村委会避险点。" * 6  # noqa: RUF001

    ref = await modem.send_sms(VILLAGE_HEAD, text)

    assert len(text) > 140
    assert [len(sms.text) for sms in sim.outbox] == [70, 70, len(text) - 140]
    assert "".join(sms.text for sms in sim.outbox) == text
    assert ref == sim.outbox[0].ref
    assert len({sms.ref for sms in sim.outbox}) == 3


def test_a_split_never_cuts_a_character_beyond_the_bmp_in_half() -> None:
    text = "预" * 69 + "🚨" + "警"

    pieces = split_for_sms(text)

    assert pieces == ["预" * 69, "🚨警"]


async def test_a_reply_comes_back_decoded_with_its_sender_and_is_then_read(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    index = sim.deliver(MONITOR, "收到")

    unread = await modem.unread()

    assert unread == [IncomingSms(index, MONITOR, "26/12/03,12:05:00+32", "收到")]
    assert await modem.unread() == []
    # Listed but not deleted (a crash before the caller stored it): still there.
    assert [sms.text for sms in await modem.received()] == ["收到"]


async def test_a_named_sender_is_decoded_too(modem: SmsModem, sim: SimulatedModem) -> None:
    sim.deliver("中国移动", "您的话费余额不足")
    sim.deliver("10086", "ok")

    assert [(sms.sender, sms.text) for sms in await modem.unread()] == [
        ("中国移动", "您的话费余额不足"),
        ("10086", "ok"),
    ]


async def test_replies_are_stored_even_if_the_modem_was_left_routing_them_to_the_port(
    pty_pair: PtyPair, sim: SimulatedModem
) -> None:
    sim.new_message_routing = 2  # as another program may leave it: +CMT, nothing stored

    async with SmsModem(str(pty_pair.agent_end), timeout_s=TIMEOUT_S) as client:
        index = sim.deliver(MONITOR, "收到")
        replies = await client.unread()

    assert [(sms.index, sms.text) for sms in replies] == [(index, "收到")]
    assert index > 0


async def test_delete_removes_the_message_from_the_modem(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    first = sim.deliver(MONITOR, "1")
    sim.deliver(VILLAGE_HEAD, "收到")

    await modem.delete(first)

    assert [(sms.sender, sms.text) for sms in await modem.received()] == [(VILLAGE_HEAD, "收到")]
    assert first not in sim.storage


async def test_unsolicited_codes_during_a_send_are_skipped(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    def reply_arrives_mid_send(line: str) -> None:
        if line.startswith("AT+CMGS"):
            sim.deliver(MONITOR, "1")  # +CMTI between the command and the "> " prompt
        elif line == "<text>":
            sim.emit_urc("RING")  # between the text and +CMGS
            sim.emit_urc('+CMTI: "SM",9')

    sim.on_command = reply_arrives_mid_send

    ref = await modem.send_sms(VILLAGE_HEAD, WARNING)

    assert sim.outbox == [SentSms(VILLAGE_HEAD, WARNING, ref)]
    assert [(sms.sender, sms.text) for sms in await modem.unread()] == [(MONITOR, "1")]


async def test_unsolicited_codes_before_a_listing_are_skipped(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    sim.deliver(MONITOR, "RING")  # a text that looks like a result code is still a text
    sim.on_command = lambda line: sim.emit_urc('+CREG: 1,"2A3B","01C2D3E4",7')

    assert [sms.text for sms in await modem.unread()] == ["RING"]
    assert await modem.signal() == 21


async def test_a_network_refusal_names_the_command_and_the_masked_number(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    sim.fail_next("+CMS ERROR: 331")

    with pytest.raises(ModemError) as refused:
        await modem.send_sms(VILLAGE_HEAD, WARNING)

    assert str(refused.value) == (
        'AT+CMGS="+861********01": the modem answered +CMS ERROR: 331 (no network service)'
    )
    assert sim.outbox == []
    # The modem is still usable after an error.
    assert await modem.send_sms(VILLAGE_HEAD, "1") == sim.outbox[0].ref


async def test_a_failed_part_of_a_long_text_is_named(modem: SmsModem, sim: SimulatedModem) -> None:
    sent = []

    def fail_the_second_part(line: str) -> None:
        if line == "<text>":
            sent.append(line)
            if len(sent) == 2:
                sim.fail_next()

    sim.on_command = fail_the_second_part

    with pytest.raises(ModemError, match=r"\(part 2 of 2\): the modem answered \+CMS ERROR: 500"):
        await modem.send_sms(VILLAGE_HEAD, "预" * 100)
    assert [len(sms.text) for sms in sim.outbox] == [70]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("ERROR", "AT+CMGD=3: the modem answered ERROR"),
        ("+CME ERROR: 10", "AT+CMGD=3: the modem answered +CME ERROR: 10 (SIM not inserted)"),
        ("+CMS ERROR: 321", "AT+CMGD=3: the modem answered +CMS ERROR: 321 (invalid memory index)"),
    ],
)
async def test_error_results_raise_naming_the_command(
    modem: SmsModem, sim: SimulatedModem, error: str, expected: str
) -> None:
    sim.fail_next(error)

    with pytest.raises(ModemError) as refused:
        await modem.delete(3)

    assert str(refused.value) == expected


async def test_a_silent_modem_raises_within_the_timeout(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    await sim.stop()

    for call in (modem.signal(), modem.send_sms(VILLAGE_HEAD, WARNING), modem.unread()):
        started = time.monotonic()
        with pytest.raises(ModemError, match=r"did not answer within 2 s"):
            await call
        assert time.monotonic() - started < TIMEOUT_S + 1.0


async def test_a_modem_that_never_answers_fails_open_within_the_timeout(
    pty_pair: PtyPair,
) -> None:
    client = SmsModem(str(pty_pair.agent_end), timeout_s=TIMEOUT_S)
    started = time.monotonic()

    with pytest.raises(ModemError, match=r"^AT\+CSQ: the modem did not answer within 2 s$"):
        await client.open()

    assert time.monotonic() - started < TIMEOUT_S + 1.0
    # The port was released: the modem can be opened once it answers.
    async with SimulatedModem(pty_pair.device_end) as sim, client:
        assert await client.signal() == sim.rssi


async def test_a_vanished_port_raises_instead_of_hanging(
    modem: SmsModem, pty_pair: PtyPair
) -> None:
    pty_pair.close()  # socat gone: the USB modem was unplugged
    started = time.monotonic()

    with pytest.raises(ModemError):
        await modem.signal()

    assert time.monotonic() - started < TIMEOUT_S + 1.0


async def test_open_again_recovers_from_a_modem_unplugged_and_plugged_back(
    tmp_path: Path,
) -> None:
    ends = {"agent_end": tmp_path / "ttyUSB2", "device_end": tmp_path / "device"}
    client = SmsModem(str(ends["agent_end"]), timeout_s=TIMEOUT_S)
    with PtyPair(**ends) as pty:
        async with SimulatedModem(pty.device_end):
            await client.open()
            pty.close()
            with pytest.raises(ModemError):
                await client.signal()
    with PtyPair(**ends) as pty:
        async with SimulatedModem(pty.device_end) as sim:
            await client.open()
            ref = await client.send_sms(MONITOR, "测试")
            await client.close()

    assert sim.outbox == [SentSms(MONITOR, "测试", ref)]


async def test_a_missing_port_is_named_on_open() -> None:
    with pytest.raises(ModemError, match="cannot open modem port /dev/ttyNOSUCHMODEM"):
        await SmsModem("/dev/ttyNOSUCHMODEM", timeout_s=TIMEOUT_S).open()


async def test_reopening_a_modem_left_in_ucs2_works(pty_pair: PtyPair, sim: SimulatedModem) -> None:
    for _ in range(2):
        async with SmsModem(str(pty_pair.agent_end), timeout_s=TIMEOUT_S) as client:
            await client.send_sms(VILLAGE_HEAD, "测试")

    assert [sms.text for sms in sim.outbox] == ["测试", "测试"]
    # The second time the modem only understood the character set's name in UCS2.
    assert f'AT+CSCS="{to_ucs2_hex("UCS2")}"' in sim.commands


async def test_a_send_cancelled_while_waiting_for_the_prompt_leaves_the_modem_usable(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    sim.prompt_delay_s = 1.0
    sending = asyncio.create_task(modem.send_sms(VILLAGE_HEAD, WARNING))
    await wait_for(lambda: any(c.startswith("AT+CMGS") for c in sim.commands), 5.0)

    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending

    # Left waiting for text, the modem would take these commands for the message.
    assert await modem.signal() == sim.rssi
    ref = await modem.send_sms(MONITOR, "测试")
    assert sim.outbox == [SentSms(MONITOR, "测试", ref)]


async def test_a_modem_left_waiting_for_text_by_a_crash_sends_nothing_stray(
    pty_pair: PtyPair, sim: SimulatedModem
) -> None:
    with serial.Serial(str(pty_pair.agent_end), 115200, timeout=1) as crashed:
        crashed.write(b'AT+CMGF=1\rAT+CMGS="+8613800000001"\r')
        await wait_for(lambda: any(c.startswith("AT+CMGS") for c in sim.commands), 5.0)

    async with SmsModem(str(pty_pair.agent_end), timeout_s=TIMEOUT_S) as client:
        ref = await client.send_sms(MONITOR, "测试")

    assert sim.outbox == [SentSms(MONITOR, "测试", ref)]


@pytest.mark.parametrize("number", ["call me", "", "+86-138-0000-0001", "1380000000112345678901"])
async def test_a_bad_number_is_refused_without_echoing_it(
    modem: SmsModem, sim: SimulatedModem, number: str
) -> None:
    with pytest.raises(ModemError, match="not a phone number") as refused:
        await modem.send_sms(number, WARNING)

    assert not number or number not in str(refused.value)
    assert not any(c.startswith("AT+CMGS") for c in sim.commands)


async def test_an_empty_text_is_refused(modem: SmsModem, sim: SimulatedModem) -> None:
    with pytest.raises(ModemError, match="the text is empty"):
        await modem.send_sms(VILLAGE_HEAD, "")
    assert sim.outbox == []


@pytest.mark.parametrize("index", [-1, True, 1.5])
async def test_a_bad_index_is_refused(modem: SmsModem, index: int) -> None:
    with pytest.raises(ModemError, match="non-negative integer"):
        await modem.delete(index)


@pytest.mark.parametrize(("rssi", "expected"), [(0, 0), (21, 21), (31, 31), (99, None)])
async def test_signal_reports_the_rssi_or_none_when_unknown(
    modem: SmsModem, sim: SimulatedModem, rssi: int, expected: int | None
) -> None:
    sim.rssi = rssi

    assert await modem.signal() == expected


async def test_no_phone_number_appears_in_the_logs(
    pty_pair: PtyPair, sim: SimulatedModem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with SmsModem(str(pty_pair.agent_end), timeout_s=TIMEOUT_S) as client:
        sim.echo = True  # echoed commands carry the number
        sim.emit_urc("RING")
        await client.send_sms(VILLAGE_HEAD, WARNING)
        sim.deliver(MONITOR, "收到")
        received = await client.unread()
        sim.fail_next("+CMS ERROR: 500")
        with pytest.raises(ModemError) as refused:
            await client.send_sms(VILLAGE_HEAD, "1")
        logging.getLogger("test").error("%s; got %r", refused.value, received)

    assert "+861********01" in caplog.text
    assert "+861********02" in caplog.text
    for number in (VILLAGE_HEAD, MONITOR):
        for form in (number, number[1:], to_ucs2_hex(number), to_ucs2_hex(number[-8:])):
            assert form not in caplog.text


async def answer_once(device: serial.Serial, command: bytes, reply: bytes) -> None:
    """Wait for ``command`` on the device end of the pty, then write ``reply``."""
    heard = bytearray()

    def arrived() -> bool:
        heard.extend(device.read(device.in_waiting or 1))
        return command in heard

    await wait_for(arrived, 5.0)
    device.write(reply)


async def test_a_late_ok_is_not_taken_for_the_answer_that_must_carry_information(
    pty_pair: PtyPair,
) -> None:
    channel = AtChannel(str(pty_pair.agent_end), 115200, TIMEOUT_S)
    channel.open()
    with serial.Serial(str(pty_pair.device_end), 115200, timeout=0) as device:
        # The OK a modem sends to ESC can arrive after the next command went out.
        answer = asyncio.create_task(
            answer_once(device, b"AT+CSQ\r", b"\r\nOK\r\n\r\n+CSQ: 5,99\r\n\r\nOK\r\n")
        )
        lines = await channel.command("AT+CSQ", info="+CSQ:", info_before_ok=True)
        await answer
    channel.close()

    assert lines == [InfoLine("+CSQ: 5,99")]


async def test_a_code_between_a_message_header_and_its_body_is_skipped(
    pty_pair: PtyPair,
) -> None:
    channel = AtChannel(str(pty_pair.agent_end), 115200, TIMEOUT_S)
    channel.open()
    header = f'+CMGL: 1,"REC UNREAD","{to_ucs2_hex(MONITOR)}","","26/12/03,14:05:00+32"'
    reply = f'\r\n{header}\r\n+CMTI: "SM",2\r\n{to_ucs2_hex("收到")}\r\n{header}\r\n\r\nOK\r\n'
    with serial.Serial(str(pty_pair.device_end), 115200, timeout=0) as device:
        answer = asyncio.create_task(answer_once(device, b"AT+CMGL\r", reply.encode()))
        lines = await channel.command("AT+CMGL", info="+CMGL:", with_body=True)
        await answer
    channel.close()

    # The second message is empty: its header is followed straight by OK.
    assert lines == [InfoLine(header, to_ucs2_hex("收到")), InfoLine(header, "")]


async def test_hwsim_modem_serves_a_pty_answers_with_the_reply_and_masks_numbers(
    tmp_path: Path,
) -> None:
    port = tmp_path / "modem"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hardware_sim.cli",
        "modem",
        "--path",
        str(port),
        "--reply",
        "收到",
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(10):
            while b"serving" not in (line := await process.stdout.readline()):
                assert line, "hwsim exited before serving"
        async with SmsModem(str(port), timeout_s=TIMEOUT_S) as client:
            await client.send_sms(VILLAGE_HEAD, WARNING)
            async with asyncio.timeout(5):
                while not (replies := await client.unread()):
                    pass
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=10)

    assert [(sms.sender, sms.text) for sms in replies] == [(VILLAGE_HEAD, "收到")]
    text = output.decode()
    assert f"SMS 1 to +861********01: {WARNING}" in text
    assert "stopped; 1 SMS sent" in text
    assert VILLAGE_HEAD not in text
    assert process.returncode == 0


class Terminal:
    """A bare serial terminal on the gateway's end, typing AT commands at the simulator."""

    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self.heard = bytearray()

    async def type(self, keys: str, until: tuple[str, ...] = ("OK\r\n", "ERROR")) -> str:
        """Send ``keys``; return what came back once it contains one of ``until``."""
        self.heard.clear()
        self.port.write(keys.encode())

        def answered() -> bool:
            self.heard.extend(self.port.read(self.port.in_waiting or 1))
            return any(end.encode() in self.heard for end in until)

        await wait_for(answered, 5.0)
        return self.heard.decode()


@pytest.fixture
async def terminal(pty_pair: PtyPair, sim: SimulatedModem) -> AsyncIterator[Terminal]:
    with serial.Serial(str(pty_pair.agent_end), 115200, timeout=0) as port:
        yield Terminal(port)


async def test_the_simulator_starts_like_a_modem_with_echo_and_in_pdu_mode(
    terminal: Terminal,
) -> None:
    assert await terminal.type("AT\r") == "AT\r\r\nOK\r\n"
    assert await terminal.type('AT+CMGS="+8613800000001"\r') == (
        'AT+CMGS="+8613800000001"\r\r\n+CMS ERROR: 304\r\n'
    )
    assert await terminal.type("AT+NOSUCH\r") == "AT+NOSUCH\r\r\nERROR\r\n"


async def test_the_simulator_sends_in_the_gsm_set_and_esc_cancels(
    terminal: Terminal, sim: SimulatedModem
) -> None:
    assert await terminal.type("ATE0\r") == "ATE0\r\r\nOK\r\n"  # echoed, then off
    for setting in ("AT+CMGF=1", 'AT+CSCS="GSM"'):
        assert await terminal.type(setting + "\r") == "\r\nOK\r\n"

    assert await terminal.type('AT+CMGS="10086"\r', until=("> ",)) == "\r\n> "
    assert await terminal.type("never mind\x1b") == "\r\nOK\r\n"
    assert await terminal.type('AT+CMGS="10086"\r', until=("> ",)) == "\r\n> "
    assert await terminal.type("CXYE\x1a") == "\r\n+CMGS: 1\r\n\r\nOK\r\n"

    assert sim.outbox == [SentSms("10086", "CXYE", 1)]


async def test_the_simulator_garbles_chinese_without_the_ucs2_coding_scheme(
    terminal: Terminal, sim: SimulatedModem
) -> None:
    for setting in ("ATE0", "AT+CMGF=1", 'AT+CSCS="UCS2"'):
        await terminal.type(setting + "\r")

    await terminal.type(f'AT+CMGS="{to_ucs2_hex("10086")}"\r', until=("> ",))
    await terminal.type(to_ucs2_hex("CX 余额") + "\x1a")

    # Data coding scheme 0 (the default) is the GSM alphabet, which has no 余额.
    assert [sms.text for sms in sim.outbox] == ["CX ??"]


async def test_the_simulator_reads_lists_and_deletes_stored_messages(
    terminal: Terminal, sim: SimulatedModem
) -> None:
    for setting in ("ATE0", "AT+CMGF=1"):
        await terminal.type(setting + "\r")
    index = sim.deliver("+8613800000002", "1")
    stamp = "26/12/03,12:05:00+32"

    assert await terminal.type("", until=("+CMTI",)) == f'\r\n+CMTI: "SM",{index}\r\n'

    assert await terminal.type("AT+CPMS?\r") == (
        '\r\n+CPMS: "SM",1,30,"SM",1,30,"SM",1,30\r\n\r\nOK\r\n'
    )
    assert await terminal.type(f"AT+CMGR={index}\r") == (
        f'\r\n+CMGR: "REC UNREAD","+8613800000002","","{stamp}"\r\n1\r\n\r\nOK\r\n'
    )
    assert await terminal.type('AT+CMGL="REC UNREAD"\r') == "\r\nOK\r\n"
    assert await terminal.type('AT+CMGL="ALL"\r') == (
        f'\r\n+CMGL: 1,"REC READ","+8613800000002","","{stamp}"\r\n1\r\n\r\nOK\r\n'
    )
    assert await terminal.type(f"AT+CMGD={index}\r") == "\r\nOK\r\n"
    assert await terminal.type(f"AT+CMGR={index}\r") == "\r\n+CMS ERROR: 321\r\n"


async def test_a_ring_that_is_picked_up_is_hung_up_and_said_so(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    sim.picks_up.add("+8613800000001")
    checks: list[float] = []

    async def no_wait(seconds: float) -> None:  # the ring's pacing, driven by the test
        checks.append(seconds)

    outcome = await modem.ring("+8613800000001", 30.0, poll_s=1.0, sleep=no_wait)
    assert outcome == "picked up"
    assert [(r.number, r.ended) for r in sim.rings] == [("+8613800000001", True)]
    assert sim.commands[-1] == "ATH"
    assert checks == [1.0]


async def test_an_unanswered_ring_rings_for_its_time_then_hangs_up(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    async def no_wait(_seconds: float) -> None:
        pass

    outcome = await modem.ring("+8613800000002", 30.0, poll_s=5.0, sleep=no_wait)
    assert outcome == "not picked up"
    (ring,) = sim.rings
    assert ring.checks == 6  # 30 s of ringing, looked at every 5 s
    assert ring.ended
    assert sim.commands[-1] == "ATH"


async def test_a_busy_phone_ends_the_ring_and_a_bad_number_is_refused(
    modem: SmsModem, sim: SimulatedModem, caplog: pytest.LogCaptureFixture
) -> None:
    async def no_wait(_seconds: float) -> None:
        pass

    sim.busy.add("+8613800000003")
    assert await modem.ring("+8613800000003", 30.0, sleep=no_wait) == "ended"
    with pytest.raises(ModemError, match=r"ATD: \+861\*+7; is not a number the modem can dial"):
        await modem.ring("+86138000007;", 30.0, sleep=no_wait)
    assert "13800000003" not in caplog.text


async def test_a_cancelled_ring_still_hangs_up(modem: SmsModem, sim: SimulatedModem) -> None:
    ringing = asyncio.create_task(modem.ring("+8613800000004", 3600.0, poll_s=0.05))
    await wait_for(lambda: sim.rings and sim.rings[0].checks >= 1, 10, "the phone to ring")
    ringing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ringing
    await wait_for(lambda: sim.rings[0].ended, 10, "the call to be hung up")


async def test_the_network_ends_a_ring_nobody_picks_up(
    modem: SmsModem, sim: SimulatedModem
) -> None:
    sim.no_answer_s = 0.0  # the network's own no-answer time has passed at the first look

    async def no_wait(_seconds: float) -> None:
        pass

    assert await modem.ring("+8613800000005", 120.0, sleep=no_wait) == "ended"
    assert sim.rings[0].ended
    # the NO CARRIER that followed is unsolicited: the next command is answered as usual
    assert await modem.signal() == 21


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("nan"), float("inf")])
def test_an_at_channel_refuses_a_deadline_that_is_no_deadline(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout_s must be a positive finite number"):
        AtChannel("/dev/ttyUSB9", 115200, timeout_s)
