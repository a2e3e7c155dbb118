"""Abusive language in published texts, flagged for the regulator's review.

:func:`find_abuse` returns where terms of the word lists occur in a text; it never
changes the text. A hit does not hide or drop anything: the caller sends the text to the
regulator's review queue (see :mod:`moderation.screening` and docs/screening.md).

The lists live in ``moderation/data`` (see its README.md for sources and licences):

* ``ldnoobw-zh.txt`` / ``ldnoobw-en.txt``: unmodified copies of the Chinese and English
  lists of the npm package ``naughty-words`` (pinned in package.json, CC-BY-4.0);
* ``portal-zh.txt`` / ``portal-en.txt``: the portal's short supplement;
* ``portal-skip.txt``: upstream terms the portal does not flag (ordinary and medical
  words that legitimate reviews use), each with its reason.

Matching runs on a per-character normalisation of the text of the same length as the
original (NFKC where that yields one character, then lower case, as in
:mod:`moderation.masking`), with zero-width characters left out, so every hit maps back to
its original span:

* Chinese (non-ASCII) terms match as substrings, also when up to 3 spaces or filler
  symbols (``* . · - _ ~ | /`` ...) or any zero-width characters separate two of their
  CJK characters: ``傻 逼``, ``傻*逼``, ``傻\u200b逼``;
* terms that begin or end with an ASCII letter or digit only match there on a word
  boundary (no ASCII letter or digit next to them), so ``ass`` is not found in
  ``assess`` nor ``cunt`` in ``Scunthorpe``; zero-width characters inside a term and
  full-width letters (``ｆｕｃｋ``) are still found; spaces in a term match any run of
  white space.

The lists are loaded and compiled once, on first use (about 0.1 s), into trie-shaped
regular expressions (one branch per first character, see :func:`_matcher`); a 2,000
character review is screened in about 0.2 ms. Only standard-library imports (no web
layer).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATA_DIR",
    "SKIP_FILE",
    "SUPPLEMENT_FILES",
    "UPSTREAM_FILES",
    "AbuseHit",
    "active_terms",
    "find_abuse",
    "read_terms",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
UPSTREAM_FILES: tuple[str, ...] = ("ldnoobw-zh.txt", "ldnoobw-en.txt")
SUPPLEMENT_FILES: tuple[str, ...] = ("portal-zh.txt", "portal-en.txt")
SKIP_FILE = "portal-skip.txt"

_MAX_FILLERS = 3
"""Visible filler characters allowed between two CJK characters of a term."""


@dataclass(frozen=True, slots=True)
class AbuseHit:
    """One occurrence of a listed term.

    ``term`` is the term as written in its list file; ``start``/``end`` index the
    original text, so ``text[start:end]`` is what the writer typed (``傻 逼``).
    """

    term: str
    start: int
    end: int


# ---------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------


def read_terms(path: Path) -> list[str]:
    """The terms of a list file, in file order (duplicates kept).

    Blank lines and lines starting with ``#`` are skipped; a reason after two spaces and
    ``#`` (``portal-skip.txt``) is cut off.
    """
    terms: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        terms.append(line.split("  #", 1)[0].strip())
    return terms


@functools.cache
def active_terms() -> tuple[str, ...]:
    """The terms that are flagged: upstream minus skipped, plus the supplement.

    Deduplicated on their normalised form, first occurrence wins, upstream first.
    """
    skipped = {_fold(t) for t in read_terms(DATA_DIR / SKIP_FILE)}
    seen: set[str] = set()
    out: list[str] = []
    for name in UPSTREAM_FILES + SUPPLEMENT_FILES:
        for term in read_terms(DATA_DIR / name):
            key = _fold(term)
            if key in seen or (name in UPSTREAM_FILES and key in skipped):
                continue
            seen.add(key)
            out.append(term)
    return tuple(out)


# ---------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------

_ZW = "\u200b"
_IGNORABLE = frozenset(
    [0x00AD, 0x034F, 0x061C, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF]
    + list(range(0x2060, 0x2065))
    + list(range(0xFE00, 0xFE10))
)
"""Soft hyphen, joiners, direction marks, word joiner, BOM and variation selectors."""


class _FoldTable(dict[int, str]):
    """``str.translate`` table computed on demand: one character in, one character out."""

    def __missing__(self, code: int) -> str:
        if code in _IGNORABLE:
            out = _ZW
        else:
            c = chr(code)
            n = unicodedata.normalize("NFKC", c)
            if len(n) != 1:
                n = c  # keep the 1:1 index mapping ("…" -> "..." is not needed)
            out = n.lower()
            if len(out) != 1:
                out = n  # "İ".lower() has two characters
        self[code] = out
        return out


_TABLE = _FoldTable()
_COMMON = tuple((c, _TABLE[ord(c)]) for c in "，：；！？（）\u3000")
"""The full-width characters of everyday Chinese text, replaced in one C-level pass each."""


@functools.cache
def _changing_re() -> re.Pattern[str]:
    """Runs of BMP characters that NFKC changes (into one character) or that are ignorable.

    ASCII and most CJK text are stable, so only these runs go through the table. Built on
    first use (about 20 ms); characters beyond the BMP are handled separately.
    """
    codes = sorted(
        {cp for cp in range(0x80, 0x10000) if not 0xD800 <= cp <= 0xDFFF and _changes(chr(cp))}
        | {cp for cp in _IGNORABLE if cp <= 0xFFFF}
    )
    ranges: list[list[int]] = []
    for cp in codes:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    chars = "".join(
        re.escape(chr(lo)) + ("" if lo == hi else "-" + re.escape(chr(hi))) for lo, hi in ranges
    )
    return re.compile(f"[{chars}]+")


def _changes(c: str) -> bool:
    n = unicodedata.normalize("NFKC", c)
    return len(n) == 1 and n != c


_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]+")


def _has_astral(text: str) -> bool:
    """Whether *text* has a character beyond U+FFFF (much faster than a regex search)."""
    return len(text.encode("utf-16-le", "surrogatepass")) != 2 * len(text)


def _fold_run(m: re.Match[str]) -> str:
    return m.group().translate(_TABLE)


def _normalise(text: str) -> str:
    """NFKC and lower-casing per character, so that ``len(result) == len(text)``.

    Ignorable characters (zero-width, variation selectors, ...) become U+200B.
    """
    if text.isascii():
        return text.lower()
    folded = text
    for c, n in _COMMON:
        folded = folded.replace(c, n)
    folded = _changing_re().sub(_fold_run, folded)
    if _has_astral(folded):
        folded = _ASTRAL_RE.sub(_fold_run, folded)
    folded = folded.lower()
    return folded if len(folded) == len(text) else text.translate(_TABLE)


def _fold(term: str) -> str:
    return _normalise(term).replace(_ZW, "")


# ---------------------------------------------------------------------------
# The compiled matchers
# ---------------------------------------------------------------------------

_FILLER_CHARS = "*.·・•‧∙-_~|/\\+=^'\"`…#@$%&"
_FILL = r"[\s" + re.escape(_FILLER_CHARS) + "]"
_CJK_GAP = f"{_FILL}{{0,{_MAX_FILLERS}}}"
_WORD = "[a-z0-9]"
_STOP = f"(?!{_WORD})"
_END = ""  # trie key marking the end of a term

_CJK_GAP_RE = re.compile(rf"(?<=[^\W\x00-\x7f]){_FILL}+(?=[^\W\x00-\x7f])")
_SPACES_RE = re.compile(r"\s+")
_LETTERS_RE = re.compile(r"[a-z][\x00-\x7f]*")
"""A run of ASCII from its first letter: English terms only occur around these."""


def _is_word(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _is_cjk(c: str) -> bool:
    return not c.isascii() and c.isalnum()  # the regex class [^\W\x00-\x7f]


def _char(c: str) -> str:
    return r"\s+" if c == " " else re.escape(c)


def _alternation(alts: list[str]) -> str:
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _branches(node: dict, prev: str) -> str:
    """The pattern for the rest of the terms below *node* (reached with *prev*).

    Children are grouped by the gap that may precede them, so that every alternative of
    an alternation starts with a literal (which the regex engine skips cheaply).
    """
    groups: dict[str, list[str]] = {}
    for c, child in sorted(node.items()):
        if c != _END:
            gap = _CJK_GAP if _is_cjk(prev) and _is_cjk(c) else ""
            groups.setdefault(gap, []).append(_char(c) + _branches(child, c))
    alts = [gap + _alternation(group) for gap, group in groups.items()]
    if _END in node:
        alts.append(_STOP if _is_word(prev) else "")  # last: longer terms are tried first
    return _alternation(alts)


def _trie_pattern(keys: list[str]) -> str:
    trie: dict = {}
    for key in keys:
        node = trie
        for c in key:
            node = node.setdefault(c, {})
        node[_END] = True
    return _alternation([_char(c) + _branches(child, c) for c, child in sorted(trie.items())])


def _canonical(matched: str) -> str:
    """The normalised term a match stands for (the gaps removed)."""
    return _SPACES_RE.sub(" ", _CJK_GAP_RE.sub("", matched))


@dataclass(frozen=True, slots=True)
class _Matcher:
    english: re.Pattern[str] | None  # ASCII terms starting with a letter or digit
    other: re.Pattern[str] | None  # everything else whose first character is in the BMP
    astral: re.Pattern[str] | None  # first character beyond U+FFFF (𨳒, 🖕)
    lead: int  # how far before its first letter an English term may start
    by_key: dict[str, str]


def _compile(keys: list[str], prefix: str = "") -> re.Pattern[str] | None:
    return re.compile(prefix + _trie_pattern(keys)) if keys else None


@functools.cache
def _matcher() -> _Matcher:
    """One trie-shaped regex per kind of term, built once.

    Three, not one, to keep the engine's fast skipping: a regex whose alternatives all
    start with a literal only tries the positions holding one of those characters, but
    only while that set fits in the Basic Multilingual Plane, and not when a look-behind
    comes first (which the English word boundary needs).
    """
    by_key: dict[str, str] = {}
    for term in active_terms():
        by_key.setdefault(_SPACES_RE.sub(" ", _fold(term).strip()), term)
    english = [k for k in by_key if k.isascii() and _is_word(k[0])]
    astral = [k for k in by_key if ord(k[0]) > 0xFFFF]
    other = [k for k in by_key if k not in english and ord(k[0]) <= 0xFFFF]
    lead = max((next(i for i, c in enumerate(k) if c.isalpha()) for k in english), default=0)
    return _Matcher(
        english=_compile(english, f"(?<!{_WORD})"),
        other=_compile(other),
        astral=_compile(astral),
        lead=lead + 4,  # room for a run of spaces where a term has one ("2 girls")
        by_key=by_key,
    )


def _spans(scan: str, m: _Matcher) -> list[tuple[int, int]]:
    """Non-overlapping match spans in *scan*, in order (the longer one on a tie)."""
    spans: list[tuple[int, int]] = []
    if m.english is not None:
        done = 0
        for run in _LETTERS_RE.finditer(scan):
            start = max(done, run.start() - m.lead)
            spans.extend(x.span() for x in m.english.finditer(scan, start, run.end()))
            done = run.end()
    if m.other is not None:
        spans.extend(x.span() for x in m.other.finditer(scan))
    if m.astral is not None and _has_astral(scan):
        spans.extend(x.span() for x in m.astral.finditer(scan))
    if len(spans) < 2:
        return spans
    spans.sort(key=lambda s: (s[0], -s[1]))
    kept = [spans[0]]
    for s in spans[1:]:
        if s[0] >= kept[-1][1]:
            kept.append(s)
    return kept


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def find_abuse(text: str) -> list[AbuseHit]:
    """Listed terms in *text*, in text order, never overlapping (longest term first)."""
    if not text:
        return []
    m = _matcher()
    norm = _normalise(text)
    if _ZW in norm:  # match on the text without them; map the spans back
        keep = [i for i, c in enumerate(norm) if c != _ZW]
        scan = norm.replace(_ZW, "")
    else:
        keep, scan = None, norm
    hits = []
    for start, end in _spans(scan, m):
        key = _canonical(scan[start:end])
        if keep is not None:
            start, end = keep[start], keep[end - 1] + 1
        hits.append(AbuseHit(m.by_key.get(key, key), start, end))
    return hits
