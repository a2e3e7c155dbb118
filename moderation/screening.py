"""Screening before publication: the one call the web layer and search make.

``screen(text)`` returns what to show and index (personal data masked, see
:mod:`moderation.masking`) and what a human has to look at (abusive language, see
:mod:`moderation.abuse`). It changes nothing: the stored text stays exactly as submitted,
and a text with abuse is not hidden or dropped here: ``needs_review`` sends it to the
regulator's review queue. docs/screening.md has the rules.

Only standard-library imports and the sibling modules (no web layer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from moderation.abuse import find_abuse
from moderation.masking import find

__all__ = ["Screened", "screen"]


@dataclass(frozen=True, slots=True)
class Screened:
    """The result of :func:`screen`.

    * ``shown``: the text to show and to index, i.e. ``masking.mask(text, policy_patterns)``;
    * ``personal_data``: the kind of each masked match (``"mobile"``, ``"id_card"``, ...),
      one per match, in text order;
    * ``abuse``: the list terms found, each once, in order of first occurrence.
    """

    shown: str
    personal_data: tuple[str, ...] = ()
    abuse: tuple[str, ...] = ()

    @property
    def needs_review(self) -> bool:
        """True when abusive language was found: the text goes to the regulator's queue."""
        return bool(self.abuse)


def screen(text: str, policy_patterns: Iterable[re.Pattern[str] | str] = ()) -> Screened:
    """Screen *text* for publication without changing it.

    *policy_patterns* are the insurer's policy-number formats, passed on to
    :func:`moderation.masking.find`. Abuse is looked for in the text as submitted.
    """
    if not text:
        return Screened(shown=text)
    matches = find(text, policy_patterns)
    # the same splice as masking.mask, done here so that find runs once
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(m.masked)
        pos = m.end
    parts.append(text[pos:])
    terms = dict.fromkeys(hit.term for hit in find_abuse(text))
    return Screened(
        shown="".join(parts),
        personal_data=tuple(m.kind for m in matches),
        abuse=tuple(terms),
    )
