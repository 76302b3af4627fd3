"""The roster (责任人): who answers for a site, by tier, and how to reach them.

Parses and validates persons (from REST or a county's CSV), and masks their contact
details for logs and for viewers. Nothing here may log a phone number or e-mail in clear:
use ``mask_phone`` / ``mask_email`` whenever a person appears in a message.
"""

from __future__ import annotations

import csv
import enum
import io
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from protocol.contacts import E164


class Tier(enum.StrEnum):
    """The chain of responsibility, lowest first: each tier answers for the ones below."""

    VILLAGE = "village"
    TOWNSHIP = "township"
    COUNTY = "county"

    @property
    def rank(self) -> int:
        """0 for village, 1 township, 2 county."""
        return list(Tier).index(self)


EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
CSV_COLUMNS = ("site_id", "tier", "name", "role", "mobile", "email", "webhook")
SITE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class RosterError(ValueError):
    """A person or a roster file that cannot be accepted; the message says where and why."""


@dataclass(frozen=True, slots=True)
class PersonIn:
    """A responsible person as given: at least one channel to reach them."""

    tier: Tier
    name: str
    role: str
    mobile: str | None = None
    email: str | None = None
    webhook: str | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """A stored responsible person of a site."""

    id: int
    site_id: str
    tier: Tier
    name: str
    role: str
    mobile: str | None
    email: str | None
    webhook: str | None

    @property
    def label(self) -> str:
        """How the person appears in logs and the record: name and tier, no contact."""
        return f"{self.name} ({self.tier.value})"


def mask_email(address: str | None) -> str | None:
    """``zhang.wei@example.cn`` -> ``z***@example.cn``."""
    if address is None:
        return None
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_webhook(url: str | None) -> str | None:
    """A work-chat robot URL carries its key: only the scheme and host are shown."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/***"


def validate_person(
    tier: str, name: str, role: str, mobile: str, email: str, webhook: str
) -> PersonIn:
    """A person from raw text fields (empty means absent); raises RosterError naming the field."""
    try:
        tier_value = Tier(tier.strip())
    except ValueError:
        msg = f"tier: {tier!r} is not one of {', '.join(t.value for t in Tier)}"
        raise RosterError(msg) from None
    name, role = name.strip(), role.strip()
    if not name or len(name) > 100:
        raise RosterError("name: give the person's name (1 to 100 characters)")
    if len(role) > 100:
        raise RosterError("role: at most 100 characters")
    mobile_value = mobile.strip().replace(" ", "") or None
    if mobile_value is not None and not E164.match(mobile_value):
        # the number itself is not echoed: it is personal data, and this text may be logged
        raise RosterError(
            "mobile: not an E.164 number (a '+', the country code, then 8 to 15 digits in all, "
            "e.g. +8613800000000)"
        )
    email_value = email.strip() or None
    if email_value is not None and (len(email_value) > 254 or not EMAIL.match(email_value)):
        raise RosterError("email: not an e-mail address like name@example.cn")
    webhook_value = webhook.strip() or None
    if webhook_value is not None:
        parts = urlsplit(webhook_value)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(webhook_value) > 500:
            raise RosterError("webhook: not an http(s) URL")
    if not (mobile_value or email_value or webhook_value):
        raise RosterError("mobile, email, webhook: give at least one way to reach the person")
    return PersonIn(tier_value, name, role, mobile_value, email_value, webhook_value)


def parse_roster_csv(text: str) -> dict[str, list[PersonIn]]:
    """Persons by site from a CSV with the header ``CSV_COLUMNS`` (any order).

    The whole file is refused at the first bad row: ``RosterError`` names the line and the
    field, so a county clerk can fix the spreadsheet and import again.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        msg = f"line 1: the header lacks the column(s) {', '.join(missing)}"
        raise RosterError(msg)
    by_site: dict[str, list[PersonIn]] = {}
    for row in reader:
        line = reader.line_num
        if None in row or any(v is None for v in row.values()):
            msg = f"line {line}: expected {len(header)} fields"
            raise RosterError(msg)
        site = row["site_id"].strip()
        if not SITE_ID.match(site):
            msg = f"line {line}: site_id: {site!r} is not a site id like creek-village"
            raise RosterError(msg)
        try:
            person = validate_person(
                row["tier"], row["name"], row["role"], row["mobile"], row["email"], row["webhook"]
            )
        except RosterError as exc:
            raise RosterError(f"line {line}: {exc}") from None
        by_site.setdefault(site, []).append(person)
    if not by_site:
        raise RosterError("the file has no persons after its header")
    return by_site
