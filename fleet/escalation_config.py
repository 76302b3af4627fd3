"""Reads ``fleet serve --escalation FILE``: the 叫应 channels and the fleet's default policy.

Example::

    sms_callback_key = "a long random string, also in Kannel's sms-service get-url"
    tick_s = 1.0
    webhooks = true
    utc_offset_h = 8        # the county's clock for a forecast's times in calls (北京时间)

    [smtp]
    host = "smtp.county.example.cn"
    port = 587
    sender = "alerts@county.example.cn"
    username = "alerts"
    password = "..."
    start_tls = true

    [kannel]
    sendsms_url = "http://127.0.0.1:13013/cgi-bin/sendsms"
    username = "fleet"
    password = "..."
    sender = "10086"
    country_code = "86"     # replies from 13800000001 answer for +8613800000001

    [policy.levels.red]
    tiers = [{tier = "village", deadline_s = 300}, {tier = "township", deadline_s = 600}]
    repeat_s = 120

It only reads and checks; a bad file is refused with the key that is wrong, and no secret
from it is ever echoed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from fleet.channels import KannelSettings, SmtpSettings
from fleet.escalation_policy import DEFAULT_POLICY, PolicyError, parse_policy
from fleet.settings import EscalationSettings
from protocol.contacts import COUNTRY_CODE
from protocol.county_clock import CHINA_STANDARD_TIME_H, MAX_UTC_OFFSET_H, MIN_UTC_OFFSET_H

_TOP = {"sms_callback_key", "tick_s", "webhooks", "utc_offset_h", "smtp", "kannel", "policy"}
_SMTP = {"host", "port", "sender", "username", "password", "start_tls", "use_tls"}
_KANNEL = {"sendsms_url", "username", "password", "sender", "dlr_url", "country_code"}


def _table(doc: dict[str, Any], name: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    table = doc[name]
    if not isinstance(table, dict):
        msg = f"[{name}]: a table"
        raise TypeError(msg)
    unknown = set(table) - allowed
    if unknown:
        msg = f"[{name}]: unknown key(s) {', '.join(sorted(unknown))}"
        raise ValueError(msg)
    missing = required - set(table)
    if missing:
        msg = f"[{name}]: missing {', '.join(sorted(missing))}"
        raise ValueError(msg)
    return table


def load_escalation_settings(path: Path) -> EscalationSettings:
    """The settings in ``path``; raises ValueError naming the file and the key."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        msg = f"{path}: {exc}"
        raise ValueError(msg) from exc
    try:
        return _settings(doc)
    except (ValueError, TypeError, PolicyError) as exc:
        msg = f"{path}: {exc}"
        raise ValueError(msg) from exc


def _settings(doc: dict[str, Any]) -> EscalationSettings:
    unknown = set(doc) - _TOP
    if unknown:
        msg = f"unknown key(s) {', '.join(sorted(unknown))}"
        raise ValueError(msg)
    smtp = kannel = None
    if "smtp" in doc:
        t = _table(doc, "smtp", _SMTP, {"host", "port", "sender"})
        smtp = SmtpSettings(**t)
    if "kannel" in doc:
        t = _table(doc, "kannel", _KANNEL, {"sendsms_url", "username", "password", "sender"})
        code = t.get("country_code")
        if code is not None and (not isinstance(code, str) or not COUNTRY_CODE.match(code)):
            msg = '[kannel] country_code: a country calling code such as "86" (no "+")'
            raise ValueError(msg)
        kannel = KannelSettings(**t)
    policy = parse_policy(doc["policy"]) if "policy" in doc else DEFAULT_POLICY
    tick = doc.get("tick_s", 1.0)
    if isinstance(tick, bool) or not isinstance(tick, int | float) or not 0.05 <= tick <= 60:
        msg = "tick_s: seconds between 0.05 and 60"
        raise ValueError(msg)
    offset = doc.get("utc_offset_h", CHINA_STANDARD_TIME_H)
    if (
        isinstance(offset, bool)
        or not isinstance(offset, int | float)
        or not MIN_UTC_OFFSET_H <= offset <= MAX_UTC_OFFSET_H
    ):
        msg = "utc_offset_h: the county's offset from UTC in hours, -12 to 14 (8 for 北京时间)"
        raise ValueError(msg)
    key = doc.get("sms_callback_key")
    if key is not None and (not isinstance(key, str) or len(key) < 16):
        msg = "sms_callback_key: a string of at least 16 characters"
        raise ValueError(msg)
    if kannel is not None and key is None:
        msg = "[kannel] needs sms_callback_key (delivery reports and replies call back)"
        raise ValueError(msg)
    return EscalationSettings(
        policy=policy,
        smtp=smtp,
        kannel=kannel,
        webhooks=bool(doc.get("webhooks", True)),
        sms_callback_key=key,
        tick_s=float(tick),
        utc_offset_h=float(offset),
    )
