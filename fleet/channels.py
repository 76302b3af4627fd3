"""叫应 channels: how a call reaches a person (e-mail, work-chat webhook, SMS through Kannel).

Each adapter does one send and says whether it went; it never retries (the escalation
engine does, on its schedule) and never raises for a refused or unreachable service, so
one broken channel cannot hold up another. Contact details never go into the result text
or a log line in clear.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib

from fleet.call_http import HttpAnswer, HttpError, Poster
from fleet.call_mail import call_mail
from fleet.robot_pace import ERRCODE_OVER_LIMIT, RobotPace
from fleet.roster import Person, mask_email, mask_webhook
from protocol.contacts import mask_phone

log = logging.getLogger(__name__)

#: No channel may take longer than this on one send; the engine sends in parallel anyway.
SEND_TIMEOUT_S = 10.0
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class CallMessage:
    """What one call says: the warning, how to answer, and the call id for reports."""

    call_id: int
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class SendResult:
    """A channel's answer: ``sent`` true if the service took the message.

    ``retry_after_s``: not sent yet, and not failed: the service has no room for it now
    (a robot's messages a minute); the outbox sends it again after that long.
    """

    sent: bool
    detail: str
    retry_after_s: float | None = None


class Channel(Protocol):
    """Sends one message to one person."""

    name: str

    def reaches(self, person: Person) -> bool:
        """Whether the person has an address on this channel."""
        ...

    async def send(self, person: Person, message: CallMessage) -> SendResult:
        """Send; never raises for a service that is down or refuses."""
        ...


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """An SMTP relay (plain, STARTTLS or implicit TLS) and the sender address."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    start_tls: bool = False
    use_tls: bool = False


class EmailChannel:
    """E-mail over SMTP with aiosmtplib."""

    name = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def reaches(self, person: Person) -> bool:
        """Has an e-mail address."""
        return person.email is not None

    async def send(self, person: Person, message: CallMessage) -> SendResult:
        """One e-mail; the Message-ID carries the call id."""
        assert person.email is not None
        s = self.settings
        try:
            mail = call_mail(
                s.sender,
                person.email,
                message.subject,
                f"<call-{message.call_id}@hazardwatch>",
                message.text,
            )
        except ValueError as exc:
            return SendResult(False, f"e-mail not sent: {exc}")
        try:
            await aiosmtplib.send(
                mail,
                sender=s.sender,
                recipients=[person.email],
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password,
                start_tls=s.start_tls,
                use_tls=s.use_tls,
                timeout=SEND_TIMEOUT_S,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("e-mail to %s failed: %s", mask_email(person.email), type(exc).__name__)
            return SendResult(False, f"SMTP: {type(exc).__name__}: {_clean(exc, person)}")
        return SendResult(True, f"accepted by {s.host}:{s.port} for {mask_email(person.email)}")


class WebhookChannel:
    """A work-chat robot (WeChat Work / DingTalk style): POST ``{"msgtype": "text", ...}``."""

    name = "webhook"

    def __init__(self, http: Poster, pace: RobotPace | None = None) -> None:
        self._http = http
        self._pace = pace or RobotPace()

    def reaches(self, person: Person) -> bool:
        """Has a webhook URL."""
        return person.webhook is not None

    async def send(self, person: Person, message: CallMessage) -> SendResult:
        """One POST; taken on a 2xx unless the robot's JSON answer has a non-zero errcode.

        Robots answer 200 even when they refuse a message (``{"errcode": 93000, ...}`` for
        a robot removed from its group), so the status alone would record a call as sent
        that nobody will see. A robot's 20 messages a minute (``fleet.robot_pace``) are
        kept: a call beyond them, or one the robot refuses for them (45009), is sent
        again at its next free slot, never dropped.
        """
        assert person.webhook is not None
        if wait_s := self._pace.wait_s(person.webhook):
            return self._later(person.webhook, wait_s, "its messages a minute are used")
        body = {"msgtype": "text", "text": {"content": f"{message.subject}\n{message.text}"}}
        try:
            answer = await self._http.post(person.webhook, json.dumps(body).encode(), _JSON)
        except HttpError as exc:
            where = mask_webhook(person.webhook)
            log.warning("webhook %s failed: %s", where, exc.kind)
            return SendResult(False, f"webhook {where}: {exc.kind}")
        if not answer.is_success:
            return SendResult(
                False, f"webhook {mask_webhook(person.webhook)} answered {answer.status}"
            )
        errcode = _robot_errcode(answer)
        if errcode == ERRCODE_OVER_LIMIT:
            full_s = self._pace.full(person.webhook)
            return self._later(person.webhook, full_s, "refused it for its rate (errcode 45009)")
        if errcode:
            return SendResult(
                False, f"webhook {mask_webhook(person.webhook)} refused it: errcode {errcode}"
            )
        return SendResult(True, f"webhook {mask_webhook(person.webhook)} answered {answer.status}")

    @staticmethod
    def _later(url: str, wait_s: float, why: str) -> SendResult:
        detail = f"webhook {mask_webhook(url)}: {why}; sent again in {wait_s:.1f} s"
        return SendResult(False, detail, retry_after_s=wait_s)


def _robot_errcode(answer: HttpAnswer) -> int:
    """A robot's ``errcode`` (0 when absent or not JSON: then the 2xx status speaks)."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return 0
    code = body.get("errcode") if isinstance(body, dict) else None
    if isinstance(code, bool) or not isinstance(code, int):
        return 0
    return code


@dataclass(frozen=True, slots=True)
class KannelSettings:
    """Kannel's smsbox ``sendsms`` interface, and where Kannel posts delivery reports.

    ``dlr_url`` is the fleet's own callback with its key (see ``fleet.routers.sms``);
    Kannel fills in ``%d`` (the report type) and the fleet adds the call id.
    ``country_code`` (``"86"``) says how to read a reply's sender reported as
    ``13800000001``; without it only international forms match a roster number.
    """

    sendsms_url: str
    username: str
    password: str
    sender: str
    dlr_url: str | None = None
    #: Replies whose sender Kannel reports in this country's domestic form match too.
    country_code: str | None = None


class KannelSmsChannel:
    """SMS through Kannel's HTTP ``sendsms`` (UTF-8 text, sent as UCS-2 for Chinese)."""

    name = "sms"

    def __init__(self, settings: KannelSettings, http: Poster) -> None:
        self.settings = settings
        self._http = http

    def reaches(self, person: Person) -> bool:
        """Has a mobile number."""
        return person.mobile is not None

    async def send(self, person: Person, message: CallMessage) -> SendResult:
        """One sendsms POST; Kannel answers 202 (queued) or 200 (sent) when it took it.

        POST with ``X-Kannel-*`` headers rather than GET with a query: URLs end up in logs
        (proxies', and httpx's when it is used), and this one would carry the number and
        password.
        """
        assert person.mobile is not None
        s = self.settings
        headers = {
            "X-Kannel-Username": s.username,
            "X-Kannel-Password": s.password,
            "X-Kannel-From": s.sender,
            "X-Kannel-To": person.mobile,
            "X-Kannel-Coding": "2",  # UCS-2: Chinese text
            "Content-Type": "text/plain; charset=UTF-8",
        }
        if s.dlr_url:
            headers["X-Kannel-DLR-Mask"] = "31"  # delivered, failed, buffered, SMSC ack/nack
            headers["X-Kannel-DLR-Url"] = f"{s.dlr_url}&call={message.call_id}&type=%d"
        try:
            answer = await self._http.post(s.sendsms_url, message.text.encode(), headers)
        except HttpError as exc:
            log.warning("SMS to %s failed: %s", mask_phone(person.mobile), exc.kind)
            return SendResult(False, f"Kannel: {exc.kind}")
        text = answer.text.strip()[:200]
        if answer.status not in (200, 202):
            return SendResult(False, f"Kannel answered {answer.status}: {text}")
        return SendResult(True, f"Kannel: {text} (to {mask_phone(person.mobile)})")


def _clean(exc: BaseException, person: Person) -> str:
    """An exception's text with the person's contact details masked."""
    text = str(exc)[:200]
    for clear, masked in (
        (person.email, mask_email(person.email)),
        (person.mobile, mask_phone(person.mobile)),
    ):
        if clear and masked:
            text = text.replace(clear, masked)
    return text
