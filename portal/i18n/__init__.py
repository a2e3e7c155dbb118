"""Translations: Chinese (zh_Hans) first, English second, from Babel .po catalogs.

Message ids are English; the zh_Hans catalog translates them. Catalogs are read from
the .po files at start-up (no compile step to forget). `make messages` re-extracts.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

HERE = Path(__file__).resolve().parent
LOCALES = ("zh_Hans", "en")
DEFAULT = "zh_Hans"
LABELS = {"zh_Hans": "中文", "en": "English"}
HTML_LANG = {"zh_Hans": "zh-Hans", "en": "en"}


def N_(message: str) -> str:  # noqa: N802 - the conventional name for "mark for extraction"
    return message


@cache
def translations(locale: str) -> gettext.NullTranslations:
    po = HERE / locale / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=locale.replace("_Hans", ""))
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def negotiate(requested: str | None, accept_language: str | None) -> str:
    """Explicit choice (cookie or ?lang=) first, then the browser's, then Chinese."""
    if requested in LOCALES:
        return requested
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return "en"
        if tag.startswith("zh"):
            return "zh_Hans"
    return DEFAULT


def translate(locale: str, message: str, params: dict[str, Any] | None = None) -> str:
    text = translations(locale).gettext(message)
    return text % params if params else text
