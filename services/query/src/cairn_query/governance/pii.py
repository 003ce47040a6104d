"""Personal data in text: e-mail addresses, IBANs, card numbers and phone numbers (the `pii` rule).

Candidates by regex, then a checksum where the format has one (IBAN mod 97, cards Luhn), so an order number
or a date range is not taken for a card.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_EMAIL = re.compile(r"\b[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}(?!\w)")


def _iban_ok(s: str) -> bool:
    s = s.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    digits = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(digits) % 97 == 1


def _luhn_ok(s: str) -> bool:
    digits = [int(c) for c in s if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _phone_ok(s: str) -> bool:
    # At least 8 digits, and not a date or a plain decimal number.
    return len(re.sub(r"\D", "", s)) >= 8 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s.strip())


_PII: dict[str, tuple[re.Pattern[str], Callable[[str], bool], str]] = {
    "email": (_EMAIL, lambda s: True, "an e-mail address"),
    "iban": (_IBAN, _iban_ok, "an IBAN"),
    "card": (_CARD, _luhn_ok, "a card number"),
    "phone": (_PHONE, _phone_ok, "a phone number"),
}


def find_pii(text: str, types: Sequence[str]) -> tuple[str, list[str]]:
    """(text with each finding replaced by its type in capitals, the kinds found); cards before phones, since
    a card number also looks like a long phone number."""
    found: list[str] = []
    for kind in ("email", "iban", "card", "phone"):
        if kind not in types:
            continue
        pattern, valid, label = _PII[kind]

        def swap(
            m: re.Match[str], kind: str = kind, valid: Callable[[str], bool] = valid, label: str = label
        ) -> str:
            if not valid(m.group(0)):
                return m.group(0)
            if label not in found:
                found.append(label)
            return f"[{kind.upper()}]"

        text = pattern.sub(swap, text)
    return text, found
