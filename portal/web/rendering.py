"""Templates: one environment, i18n in every context, page or fragment from one URL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from jinja2_fragments import render_block
from jinja2_fragments.starlette import Jinja2Blocks
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from portal.canonical import utc
from portal.config import ROOT
from portal.i18n import HTML_LANG, LABELS, LOCALES, negotiate, translations
from portal.ratings import CHINA
from portal.web.security import anonymous_csrf_token


def locale_of(request: Request) -> str:
    cached = getattr(request.state, "locale", None)
    if cached:
        return str(cached)
    locale = negotiate(
        request.query_params.get("lang") or request.cookies.get("lang"),
        request.headers.get("accept-language"),
    )
    request.state.locale = locale
    return locale


def public_context(locale: str) -> dict[str, Any]:
    """What a template may use when its HTML is shared between visitors: the locale,
    and no principal, CSRF token or path (those belong to the per-request shell)."""
    t = translations(locale)
    return {
        "_": t.gettext,
        "ngettext": t.ngettext,
        "locale": locale,
        "html_lang": HTML_LANG[locale],
        "principal": None,
        "csrf_token": "",
    }


def _context(request: Request) -> dict[str, Any]:
    locale = locale_of(request)
    t = translations(locale)
    principal = getattr(request.state, "principal", None)
    csrf = (
        principal.csrf_token
        if principal and principal.csrf_token
        else (anonymous_csrf_token(request))
    )
    return {
        "_": t.gettext,
        "ngettext": t.ngettext,
        "locale": locale,
        "html_lang": HTML_LANG[locale],
        "locales": [(code, LABELS[code]) for code in LOCALES],
        "principal": principal,
        "csrf_token": csrf,
        "path": request.url.path,
        "full_path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }


def make_templates(reload: bool = False) -> Jinja2Blocks:
    """`reload`: look for edited templates on every render (development). Elsewhere
    they are read once: the check is a stat() per template per request, ~2% of a cached
    insurer page's CPU (bench/profile_pages.py)."""
    templates = Jinja2Blocks(directory=str(ROOT / "templates"), context_processors=[_context])
    env = templates.env
    env.auto_reload = reload
    env.filters["num"] = lambda v, locale="zh_Hans": format_decimal(v, locale=_babel(locale))
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.globals["babel_locale"] = _babel
    return templates


_BABEL = {"zh_Hans": Locale.parse("zh_Hans_CN"), "en": Locale.parse("en")}


def _babel(locale: str) -> Locale:
    """Babel's locale, parsed once: given a name, every format call parses it again."""
    return _BABEL.get(locale, _BABEL["en"])


def _when(value: datetime | None, locale: str = "zh_Hans", fmt: str = "medium") -> str:
    if value is None:
        return ""
    # Beijing time, and say so: the API speaks UTC, people here read UTC+8.
    shown = format_datetime(utc(value).astimezone(CHINA), fmt, locale=_babel(locale))
    return f"{shown} (UTC+8)"


def _day(value: datetime | None, locale: str = "zh_Hans") -> str:
    """The calendar day in Beijing (a notice's date: "2026年11月22日")."""
    if value is None:
        return ""
    return format_date(utc(value).astimezone(CHINA).date(), "long", locale=_babel(locale))


def is_htmx(request: Request) -> bool:
    """An htmx request wanting a fragment (a history restore wants the whole page)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The full page, or only `block` when htmx asks for a fragment."""
    templates = request.state.portal.templates
    fragment = block if is_htmx(request) else None
    headers = {**(headers or {}), "Vary": "HX-Request"}
    return templates.TemplateResponse(
        request, template, context or {}, status_code=status, headers=headers, block_name=fragment
    )


def render_blocks(
    request: Request, template: str, blocks: tuple[str, ...], context: dict[str, Any]
) -> dict[str, str]:
    """Blocks of a page rendered alone, as visitor-independent HTML (public_context)."""
    env = request.state.portal.templates.env
    values = {**context, **public_context(locale_of(request))}
    return {name: render_block(env, template, name, values) for name in blocks}


def render_prerendered(
    request: Request, blocks: dict[str, str], *, block: str, headers: dict[str, str]
) -> Response:
    """A page from blocks rendered earlier (render_blocks), in the per-request shell
    (base.html), or only `block` for an htmx request: as render() would answer."""
    # Markup: this is HTML that Jinja autoescaped when render_blocks made it.
    safe = {name: Markup(html) for name, html in blocks.items()}  # noqa: S704
    if is_htmx(request):
        return render(
            request,
            "_partials/_prerendered_block.html",
            {"blocks": safe, "block": block},
            headers=headers,
        )
    return render(request, "_partials/_prerendered_page.html", {"blocks": safe}, headers=headers)
