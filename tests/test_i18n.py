"""Every message the code and templates can show has a Chinese translation."""

from __future__ import annotations

import re

from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.pofile import read_po

from portal.i18n import negotiate, translate
from tests.conftest import repo_root

KEYWORDS = [
    "PayloadTooLarge",
    "N_",
    "Invalid",
    "Conflict",
    "NotFound",
    "BadRequest",
    "Forbidden",
    "Unauthorized",
    "RateLimited",
    "PortalError",
]


def _extract() -> set[str]:
    """What `make messages` extracts, through Babel's own API."""
    root = repo_root()
    keywords = {**DEFAULT_KEYWORDS, **{k: None for k in KEYWORDS}}
    files = [(p, "python") for d in ("portal", "moderation") for p in (root / d).rglob("*.py")]
    files += [(p, "jinja2") for p in (root / "templates").rglob("*.html")]
    found = set()
    for path, method in files:
        for _, message, _, _ in extract_from_file(method, path, keywords=keywords):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_catalog_translates_every_message() -> None:
    wanted = _extract()
    assert "Wrong user name or password." in wanted  # the extraction itself works
    po = repo_root() / "portal/i18n/zh_Hans/LC_MESSAGES/messages.po"
    with po.open("rb") as f:
        catalog = {_singular(m.id): m.string for m in read_po(f) if m.id}
    missing = sorted(m for m in wanted if not _done(catalog.get(m)))
    assert not missing, f"untranslated (run `make messages` and translate): {missing}"


def _singular(msgid: str | tuple[str, ...]) -> str:
    return msgid if isinstance(msgid, str) else msgid[0]


def _done(string: str | tuple[str, ...] | None) -> bool:
    """Translated: a string, or every plural form (Chinese has one)."""
    return bool(string) and (isinstance(string, str) or all(string))


def test_placeholders_survive_translation() -> None:
    po = repo_root() / "portal/i18n/zh_Hans/LC_MESSAGES/messages.po"
    with po.open("rb") as f:
        for m in read_po(f):
            if not (m.id and _done(m.string)):
                continue
            ids = [m.id] if isinstance(m.id, str) else list(m.id)
            strings = [m.string] if isinstance(m.string, str) else list(m.string)
            names = sorted(re.findall(r"%\((\w+)\)s", ids[0]))
            for translated in strings:
                assert names == sorted(re.findall(r"%\((\w+)\)s", translated)), m.id


def test_error_messages_are_translated_with_parameters() -> None:
    msg = "Score %(value)s is out of range: use 1 to %(scale)s."
    assert translate("en", msg, {"value": 6, "scale": 5}) == "Score 6 is out of range: use 1 to 5."
    zh = translate("zh_Hans", msg, {"value": 6, "scale": 5})
    assert "6" in zh and "5" in zh and zh != translate("en", msg, {"value": 6, "scale": 5})


def test_language_negotiation() -> None:
    assert negotiate(None, None) == "zh_Hans"
    assert negotiate(None, "en-US,en;q=0.9") == "en"
    assert negotiate(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh_Hans"
    assert negotiate("en", "zh-CN") == "en"
    assert negotiate("fr", "fr-FR") == "zh_Hans"
