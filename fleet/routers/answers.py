"""Answers without logging in: the answer link of each message, and Kannel's callbacks.

``/a/{token}``: GET shows the warning (with its slope forecast as now known) and a confirm
button, POST records the answer (a bad, used or expired link gets 404 or 410 with
``detail``, like every refusal). Opening alone does not answer, because chat apps and
mail scanners fetch links by themselves and would silence the call for nobody. The SMS
callbacks are guarded by a key in the URL that only Kannel's configuration knows; a
caller without it learns nothing.
"""

from __future__ import annotations

import hmac
import html
import logging
from typing import Annotated, Any, Literal
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from fleet.dependencies import Calls, refusals
from fleet.escalation import AnswerRefusedError, EscalationEngine
from fleet.escalation_store import DeliveryReport
from fleet.timestamps import iso
from protocol.contacts import mask_phone

log = logging.getLogger(__name__)

link_router = APIRouter(tags=["answers"])
sms_router = APIRouter(prefix="/api/v1/sms", tags=["answers"])

#: Kannel's delivery-report types (its ``%d``): 1 delivered, 2 failed, 4 buffered,
#: 8 accepted by the SMSC, 16 rejected by the SMSC.
DLR_WORDS = {1: "delivered", 2: "failed", 4: "buffered", 8: "accepted by the SMSC", 16: "rejected"}
#: The reports that settle a call: delivered, or failed (then it is retried).
DLR_OUTCOMES: dict[int, Literal["delivered", "failed"]] = {
    1: "delivered",
    2: "failed",
    16: "failed",
}

_PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>HazardWatch 叫应</title></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>"""
_FORM = """<form method="post"><button type="submit" style="font-size:2em">收到 · Confirm</button>
</form>"""


def _page(title: str, text: str, *, form: bool = False, code: int = 200) -> HTMLResponse:
    body = _PAGE.format(
        title=html.escape(title), text=html.escape(text), form=_FORM if form else ""
    )
    return HTMLResponse(body, status_code=code)


_HTML_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "a page for a person", "content": {"text/html": {}}}
}


@link_router.get("/a/{token}", responses={**_HTML_PAGE, **refusals(404, 410)})
def answer_page(token: str, calls: Calls) -> HTMLResponse:
    """The confirm page of an answer link (nothing is recorded until it is posted)."""
    try:
        call_id = calls.links.call_id(token, calls.clock())
    except ValueError as exc:
        gone = "expired" in str(exc)
        code = status.HTTP_410_GONE if gone else status.HTTP_404_NOT_FOUND
        raise HTTPException(code, str(exc)) from exc
    warning = calls.warning_of_call(call_id) or ""
    confirm = "请确认您已收到预警。Confirm that you received the warning."
    return _page("HazardWatch 预警", f"{warning}{confirm}", form=True)


@link_router.post("/a/{token}", responses={**_HTML_PAGE, **refusals(404, 410)})
def answer(token: str, calls: Calls) -> HTMLResponse:
    """Record the answer of the call this link belongs to (once)."""
    try:
        taken = calls.answer_link(token)
    except AnswerRefusedError as exc:
        code = status.HTTP_410_GONE if exc.gone else status.HTTP_404_NOT_FOUND
        raise HTTPException(code, str(exc)) from exc
    return _page(
        "已收到 · Received",
        f"{taken.person}: 已记录 · recorded at {iso(calls.clock())}",
    )


def _check_key(key: str, calls: Calls) -> None:
    expected = calls.sms_callback_key
    if expected is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")


@sms_router.get("/dlr", responses=refusals(404))
async def delivery_report(
    request: Request,
    key: str,
    call: Annotated[int, Query(ge=1)],
    report: Annotated[int, Query(alias="type", description="Kannel's %d")],
) -> dict[str, bool]:
    """Kannel's delivery report for a call (its dlr-url), answered once it is committed.

    On the event loop, with no dependency run on a worker thread: a burst of SMS brings
    two of these per message, and they are written in groups (``fleet.delivery_reports``).
    """
    calls: EscalationEngine = request.app.state.escalation
    _check_key(key, calls)
    word = DLR_WORDS.get(report, f"report type {report}")
    outcome = DLR_OUTCOMES.get(report)
    known = await calls.deliveries.record(
        DeliveryReport(call, outcome, f"SMS {word}", calls.clock())
    )
    return {"recorded": known}


@sms_router.get("/mo", responses=refusals(404))
def reply(
    request: Request,
    key: str,
    calls: Calls,
    sender: Annotated[str, Query(alias="from", max_length=32)],
    charset: str = "",
) -> dict[str, int]:
    """A reply SMS from Kannel's sms-service (``text=%b&charset=%C``): "1" or "收到" answers.

    ``text`` is the message's bytes URL-encoded (UCS-2 for Chinese), so it is read from the
    raw query string: decoding it as UTF-8 text first would garble it.
    """
    _check_key(key, calls)
    raw = b""
    for pair in request.url.query.split("&"):
        name, _, value = pair.partition("=")
        if name == "text":
            raw = unquote_to_bytes(value.replace("+", " "))[:2000]
    encoding = "utf-16-be" if charset.upper() in ("UTF-16BE", "UCS-2", "UTF-16") else "utf-8"
    words = raw.decode(encoding, errors="replace")
    taken = calls.answer_sms(sender, words)
    log.info("reply SMS from %s: %d escalation(s) answered", mask_phone(sender), len(taken))
    return {"answered": len(taken)}
