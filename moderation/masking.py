"""Masking of personal data in published review texts.

The stored text of a review stays exactly as submitted; :func:`mask` is applied to what
is shown and indexed, and :func:`find` lets callers flag a text without changing it.

Kinds (see docs/masking.md for the full rules and the limits):

* ``id_card``    18-digit resident ID (GB 11643): MOD 11-2 check digit and a plausible
                 birth date, keeps the first 3 and the last 2 characters;
* ``bank_card``  16-19 digits, optionally grouped in fours, Luhn-valid; keeps the last 4;
* ``policy``     matches of insurer-configured patterns; keeps the last 4 letters/digits;
* ``mobile``     mainland mobile (``1[3-9]`` + 9 digits, optional +86/86/0086 prefix,
                 3-4-4 grouping); keeps the first 3 and the last 4 digits;
* ``landline``   area code (``010``, ``02x`` or ``0`` + 3 digits starting 3-9), optionally
                 in parentheses, and a 7-8 digit subscriber number, optional extension;
                 masks the subscriber number except its last 2 digits;
* ``email``      keeps the first character of the local part and the domain.

Matching runs on a per-character NFKC normalisation of the text (full-width digits,
letters, ``＠``, ``－``, ``（）`` and the ideographic space become ASCII) that has the
same length as the original, so every match maps back to the original span; masking
replaces characters of that original span only and leaves everything else untouched.
Only this module's standard-library imports are allowed (no web layer).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

__all__ = [
    "BANK_CARD",
    "EMAIL",
    "ID_CARD",
    "KINDS",
    "LANDLINE",
    "MOBILE",
    "POLICY",
    "Match",
    "find",
    "mask",
]

ID_CARD = "id_card"
BANK_CARD = "bank_card"
POLICY = "policy"
MOBILE = "mobile"
LANDLINE = "landline"
EMAIL = "email"

KINDS: tuple[str, ...] = (EMAIL, ID_CARD, BANK_CARD, POLICY, MOBILE, LANDLINE)
"""All kinds, most specific first: on overlapping candidates the earlier kind wins."""

_RANK = {kind: i for i, kind in enumerate(KINDS)}

MASK_CHAR = "*"
_EMAIL_STARS = "***"


@dataclass(frozen=True, slots=True)
class Match:
    """One piece of personal data found in a text.

    ``start``/``end`` index the original text (``text[start:end] == original``);
    ``masked`` is what :func:`mask` puts in its place.
    """

    kind: str
    start: int
    end: int
    original: str
    masked: str


# ---------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _norm_char(c: str) -> str:
    n = unicodedata.normalize("NFKC", c)
    if len(n) != 1:
        return c  # keep the 1:1 index mapping (e.g. "…" -> "..." is not needed)
    if "0" <= n <= "9" and unicodedata.category(c) != "Nd":
        return c  # ① or ² are not digits of a number
    return n


def _normalise(text: str) -> str:
    """NFKC per character, so that ``len(result) == len(text)``."""
    if text.isascii():
        return text
    return "".join(c if c.isascii() else _norm_char(c) for c in text)


# ---------------------------------------------------------------------------
# Patterns (run on the normalised text)
# ---------------------------------------------------------------------------

# Not inside a longer run of ASCII letters/digits, nor part of a decimal number.
_B = r"(?<![0-9A-Za-z_])(?<![0-9]\.)"
_E = r"(?![0-9A-Za-z_])(?!\.[0-9])"

_ID_RE = re.compile(
    _B + r"(?P<a>[1-9][0-9]{5})(?P<s1>[ ]?)(?P<b>[0-9]{8})(?P=s1)(?P<c>[0-9]{3}[0-9Xx])" + _E
)
_CARD_RE = re.compile(
    _B
    + r"(?:[1-9][0-9]{15,18}"
    + r"|[1-9][0-9]{3}(?P<sep>[ -])[0-9]{4}(?:(?P=sep)[0-9]{4}){2}(?:(?P=sep)[0-9]{1,3})?)"
    + _E
)
_MOBILE_RE = re.compile(
    r"(?<![0-9A-Za-z_+])(?<![0-9]\.)"
    r"(?:(?:\+|00)?86[ -]?)?"
    r"(?P<a>1[3-9][0-9])[ -]?(?P<b>[0-9]{4})[ -]?(?P<c>[0-9]{4})" + _E
)
# Area codes: 010 and 020-029 (0 + 2 digits), everything else 0 + 3 digits starting 3-9.
_AREA = r"0(?:10|2[0-9]|[3-9][0-9]{2})"
_LANDLINE_RE = re.compile(
    r"(?<![0-9A-Za-z_])(?<![0-9]\.)"
    r"(?:\((?P<area1>" + _AREA + r")\)[ -]?|(?P<area2>" + _AREA + r")[ -]?)"
    r"(?P<sub>[1-9][0-9]{6,7})"
    r"(?:(?:-|转|ext\.?|#)[0-9]{1,6})?" + _E
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])"
    r"(?P<local>[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]{0,63})"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})"
    r"(?![A-Za-z0-9\-])(?!\.[A-Za-z0-9])"
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character for 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _plausible_birth(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def _valid_id(number: str) -> bool:
    return _plausible_birth(number[6:14]) and id_check_char(number[:17]) == number[17].upper()


# ---------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    kind: str
    start: int
    end: int
    hide: tuple[int, ...]  # positions (in the text) to replace with MASK_CHAR
    email_at: int = -1  # for e-mails: position of "@"


def _alnum_positions(norm: str, start: int, end: int) -> list[int]:
    return [i for i in range(start, end) if norm[i].isascii() and norm[i].isalnum()]


def _hide_middle(positions: list[int], head: int, tail: int) -> tuple[int, ...]:
    return tuple(positions[head : len(positions) - tail])


def _candidates(norm: str, policy_patterns: tuple[re.Pattern[str], ...]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for m in _EMAIL_RE.finditer(norm):
        out.append(_Candidate(EMAIL, m.start(), m.end(), (), email_at=m.start("domain") - 1))
    for m in _ID_RE.finditer(norm):
        if _valid_id(m["a"] + m["b"] + m["c"]):
            pos = _alnum_positions(norm, m.start(), m.end())
            out.append(_Candidate(ID_CARD, m.start(), m.end(), _hide_middle(pos, 3, 2)))
    for m in _CARD_RE.finditer(norm):
        pos = _alnum_positions(norm, m.start(), m.end())
        if 16 <= len(pos) <= 19 and luhn_ok("".join(norm[i] for i in pos)):
            out.append(_Candidate(BANK_CARD, m.start(), m.end(), _hide_middle(pos, 0, 4)))
    for pattern in policy_patterns:
        for start, end in _policy_spans(norm, pattern):
            pos = _alnum_positions(norm, start, end)
            if len(pos) > 4:
                out.append(_Candidate(POLICY, start, end, _hide_middle(pos, 0, 4)))
    for m in _MOBILE_RE.finditer(norm):
        national = _alnum_positions(norm, m.start("a"), m.end("c"))
        out.append(_Candidate(MOBILE, m.start(), m.end(), _hide_middle(national, 3, 4)))
    for m in _LANDLINE_RE.finditer(norm):
        sub = list(range(m.start("sub"), m.end("sub")))
        out.append(_Candidate(LANDLINE, m.start(), m.end(), _hide_middle(sub, 0, 2)))
    return out


@functools.lru_cache(maxsize=64)
def _bounded(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """The pattern wrapped in the same boundary lookarounds as the built-in kinds."""
    try:
        return re.compile(f"{_B}(?:{pattern.pattern}){_E}", pattern.flags)
    except re.error:  # e.g. global inline flags that must stay at the start
        return None


def _policy_spans(norm: str, pattern: re.Pattern[str]) -> Iterable[tuple[int, int]]:
    bounded = _bounded(pattern)
    if bounded is not None:
        return ((m.start(), m.end()) for m in bounded.finditer(norm) if m.end() > m.start())

    def alnum(i: int) -> bool:
        return 0 <= i < len(norm) and norm[i].isascii() and (norm[i].isalnum() or norm[i] == "_")

    return (
        (m.start(), m.end())
        for m in pattern.finditer(norm)
        if m.end() > m.start() and not alnum(m.start() - 1) and not alnum(m.end())
    )


def _as_patterns(policy_patterns: Iterable[re.Pattern[str] | str]) -> tuple[re.Pattern[str], ...]:
    return tuple(p if isinstance(p, re.Pattern) else re.compile(p) for p in policy_patterns)


def _render(text: str, c: _Candidate) -> str:
    if c.kind == EMAIL:
        return text[c.start] + _EMAIL_STARS + text[c.email_at : c.end]
    hide = set(c.hide)
    return "".join(MASK_CHAR if i in hide else text[i] for i in range(c.start, c.end))


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def find(text: str, policy_patterns: Iterable[re.Pattern[str] | str] = ()) -> list[Match]:
    """Personal data in *text*, in text order, never overlapping.

    All candidates of all kinds are collected first; where candidates overlap, the most
    specific kind wins (e-mail > ID card > bank card > policy > mobile > landline), then
    the longer span, then the earlier one.  *policy_patterns* are insurer-configured
    regular expressions (e.g. ``re.compile(r"P\\d{12}")``) matched against the
    normalised text and bounded like the built-in kinds.
    """
    if not text:
        return []
    norm = _normalise(text)
    candidates = _candidates(norm, _as_patterns(policy_patterns))
    candidates.sort(key=lambda c: (_RANK[c.kind], c.start - c.end, c.start))
    taken: list[_Candidate] = []
    for c in candidates:
        if all(c.end <= t.start or c.start >= t.end for t in taken):
            taken.append(c)
    taken.sort(key=lambda c: c.start)
    return [Match(c.kind, c.start, c.end, text[c.start : c.end], _render(text, c)) for c in taken]


def mask(text: str, policy_patterns: Iterable[re.Pattern[str] | str] = ()) -> str:
    """*text* with every :func:`find` match replaced by its masked form.

    Everything outside the matches is kept as is.  ``mask(mask(t)) == mask(t)`` for the
    built-in kinds (and for policy patterns that cannot match ``*``).
    """
    matches = find(text, policy_patterns)
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(m.masked)
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)
