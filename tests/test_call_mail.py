"""A 叫应 e-mail's bytes read back as the same message by Python's e-mail parser.

The fleet writes the message itself (``fleet/call_mail.py``) rather than through
``EmailMessage``; any mail program must still see the same sender, recipient, Chinese
subject and text, and no value can smuggle in a header.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from fleet.call_mail import call_mail

SUBJECT = "[HazardWatch] RED 红色预警 creek-village"
TEXT = "【HazardWatch 红色预警】站点 creek-village（slope）。请回复 1 或 收到 确认，或打开 http://fleet.example.cn/a/token"  # noqa: RUF001


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_message_reads_back_with_its_chinese_subject_and_text() -> None:
    raw = call_mail("alerts@county.example.cn", "wang@village.example.cn", SUBJECT,
                    "<call-7@hazardwatch>", TEXT)  # fmt: skip
    message = parsed(raw)
    assert message["From"] == "alerts@county.example.cn"
    assert message["To"] == "wang@village.example.cn"
    assert message["Subject"] == SUBJECT
    assert message["Message-ID"] == "<call-7@hazardwatch>"
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == TEXT
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))  # RFC 5322's line length
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only


def test_a_long_subject_is_folded_and_still_reads_back_whole() -> None:
    subject = "红色预警" * 40
    message = parsed(call_mail("a@b.cn", "c@d.cn", subject, "<x@hazardwatch>", "正文"))
    assert message["Subject"] == subject


@pytest.mark.parametrize(
    ("to", "subject"),
    [("wang@village.example.cn\r\nBcc: all@example.cn", SUBJECT),
     ("wang@village.example.cn", "red\r\nBcc: all@example.cn"),
     ("王@village.example.cn", SUBJECT)],
)  # fmt: skip
def test_a_line_break_or_non_ascii_address_cannot_make_a_header(to: str, subject: str) -> None:
    with pytest.raises(ValueError, match=r"line break|non-ASCII"):
        call_mail("alerts@county.example.cn", to, subject, "<x@hazardwatch>", TEXT)
