"""What the fleet and the gateway agree on about reaching a person: numbers and answers.

A mobile number is E.164; a reply SMS that means "received" (叫应's answer) is one of a few
words. Both sides use these, so a village monitor's "收到" counts the same whether the
county's SMS gateway or the gateway's own modem took it. Nothing here may log a number:
``mask_phone`` is what a log line shows.
"""

from __future__ import annotations

import re

#: A mobile number in E.164: '+', country code, subscriber number, 8 to 15 digits in all.
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
#: SMS replies that mean "received" (叫应's answer), compared after ``reply_word``.
ANSWER_WORDS = frozenset({"1", "收到", "ok"})
#: A country calling code (ITU-T E.164 assigns one to three digits, never starting with 0).
COUNTRY_CODE = re.compile(r"^[1-9]\d{0,2}$")
#: The national (trunk) prefix a domestic number may be written with, as in China's 0.
TRUNK_PREFIX = "0"
#: Trailing punctuation a reply may carry: ASCII and full-width full stops and exclamations.
_REPLY_PUNCTUATION = ".!\u3002\uff01"


def mask_phone(number: str | None) -> str | None:
    """``+8613812345678`` -> ``+861*******78``: enough to tell two numbers apart, no more."""
    if number is None:
        return None
    keep_head, keep_tail = 4, 2
    if len(number) <= keep_head + keep_tail:
        return "*" * len(number)
    return number[:keep_head] + "*" * (len(number) - keep_head - keep_tail) + number[-keep_tail:]


def is_answer(text: str) -> bool:
    """True for a reply that confirms receipt: "1", "收到", "OK", with or without a full stop."""
    return text.strip().rstrip(_REPLY_PUNCTUATION).strip().lower() in ANSWER_WORDS


def sender_numbers(sender: str, country_code: str | None = None) -> tuple[str, ...]:
    """The E.164 numbers a reported sender can stand for, to look up exactly.

    A modem reports a reply's sender in international form (``+8613800000001``, or
    ``008613800000001``) or, on many networks, in the domestic form
    (``13800000001``). Without ``country_code`` only the international reading is given;
    with it, digits without a prefix are also read as a domestic number of that country
    (a leading trunk ``0`` dropped). Never a match by a number's ending: a different,
    shorter number that ends the same way stands for nobody on the list.
    """
    number = sender.strip()
    if number.startswith("+"):
        return (number,)
    if number.startswith("00"):
        return ("+" + number[2:],)
    forms = ["+" + number.lstrip("0")]
    if country_code is not None and number.isdigit():
        domestic = number.removeprefix(TRUNK_PREFIX)
        forms.append(f"+{country_code}{domestic}")
    return tuple(dict.fromkeys(f for f in forms if E164.match(f)))
