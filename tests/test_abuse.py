"""Abusive language flagged for review (moderation.abuse) and its vendored word lists."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moderation import abuse
from moderation.abuse import AbuseHit, find_abuse
from tests.conftest import repo_root

CI = os.environ.get("CI") == "true"
PACKAGE = "naughty-words"


def terms_and_spans(text: str) -> list[tuple[str, str]]:
    """(list term, what the writer typed) for each hit."""
    return [(h.term, text[h.start : h.end]) for h in find_abuse(text)]


# ---------------------------------------------------------------------------
# The table: (text, expected [(term, original span)])
# ---------------------------------------------------------------------------

HITS: list[tuple[str, list[tuple[str, str]]]] = [
    # Chinese, as written
    ("你这个王八蛋，赔不赔给个准话", [("王八蛋", "王八蛋")]),
    ("客服就是个傻逼", [("傻逼", "傻逼")]),
    ("他妈的理赔拖了三个月", [("他妈的", "他妈的")]),
    ("操你妈，退钱", [("操你妈", "操你妈")]),
    ("业务员脑残吧，材料交了三遍", [("脑残", "脑残")]),
    ("滚蛋吧你们", [("滚蛋", "滚蛋")]),
    ("你去死吧", [("你去死", "你去死")]),
    ("这帮人渣骗我签字", [("人渣", "人渣")]),
    ("白痴客服，问三遍答非所问", [("白痴", "白痴")]),
    # longest term wins, several hits, repeated hits
    ("你个傻比", [("你个傻比", "你个傻比")]),
    ("傻逼客服，傻逼公司", [("傻逼", "傻逼"), ("傻逼", "傻逼")]),
    ("王八蛋和混蛋", [("王八蛋", "王八蛋"), ("混蛋", "混蛋")]),
    # evasions: spaces, fillers, zero-width characters, full-width and mixed case
    ("傻 逼客服", [("傻逼", "傻 逼")]),
    ("傻\u3000逼", [("傻逼", "傻\u3000逼")]),
    ("傻*逼", [("傻逼", "傻*逼")]),
    ("傻＊逼", [("傻逼", "傻＊逼")]),
    ("傻・逼", [("傻逼", "傻・逼")]),
    ("傻 * 逼", [("傻逼", "傻 * 逼")]),
    ("傻\u200b逼", [("傻逼", "傻\u200b逼")]),
    ("王\u200d八\ufeff蛋", [("王八蛋", "王\u200d八\ufeff蛋")]),
    ("草  泥  马", [("草泥马", "草  泥  马")]),
    ("傻B客服", [("傻b", "傻B")]),
    ("贱Ｂ", [("贱B", "贱Ｂ")]),
    # traditional script and Cantonese from the upstream list
    ("屌你老母", [("屌", "屌"), ("你老母", "你老母")]),
    ("𨳒你", [("𨳒", "𨳒")]),
    # English on word boundaries, any case, full-width, zero-width inside
    ("The agent was a bitch.", [("bitch", "bitch")]),
    ("FUCK this insurer", [("fuck", "FUCK")]),
    ("ｆｕｃｋ", [("fuck", "ｆｕｃｋ")]),
    ("what the f\u200buck", [("fuck", "f\u200buck")]),
    ("they fucked up my claim", [("fucked", "fucked")]),
    ("piece  of shit", [("piece of shit", "piece  of shit")]),
    ("bullshit!", [("bullshit", "bullshit")]),
    ("客服说asshole", [("asshole", "asshole")]),
    ("🖕", [("🖕", "🖕")]),
]

CLEAN: list[str] = [
    # ordinary reviews, including harsh but legitimate complaints
    "理赔太慢了，客服态度还可以",
    "投诉了三次",
    "骗子公司，欺骗消费者，我要投诉到银保监",
    "垃圾服务，黑心保险公司",
    "被逼着签了放弃声明",
    "我真傻，逼不得已才买的",
    "我妈的保单理赔了两个月",
    "他妈妈住院，他奶奶也住院",
    "小姑娘的态度很好",
    "节日你好，昨日你们说会回电",
    "3月5日批复，若干你们的材料",
    "保障你全家的口号很好听",
    # insurance and medical words that the upstream list has in another sense
    "乳腺癌和卵巢癌都在重疾清单里",
    "性价比高，一次性赔付，女性专属",
    "成人重疾险，老二的少儿险",
    "阴道镜检查和包皮手术都报销了",
    "合计柒仟元整",
    "保费13.5万元，下午13点到的",
    "座椅靠背坏了，野鸡公司",
    "肥西县的网点",
    "去死者户籍地开证明",
    "草....泥马",  # four fillers: beyond the gap allowed inside a term
    # English: the Scunthorpe problem
    "assessment",
    "class",
    "Scunthorpe",
    "ass\u200bessment",
    "The cocktail was a passion fruit spritz",
    "cumulative cover, titles and analysis",
    "A grape and a button",
    "sexual harassment by the agent",
    "the claims process sucks",
    "XX保险公司的xxx经理",
    "the girl on the phone said to call back",
    "Mong Kok branch",
    "",
]


@pytest.mark.parametrize(("text", "expected"), HITS)
def test_hits(text: str, expected: list[tuple[str, str]]) -> None:
    assert terms_and_spans(text) == expected


@pytest.mark.parametrize("text", CLEAN)
def test_not_flagged(text: str) -> None:
    assert find_abuse(text) == []


def test_the_table_is_big_enough() -> None:
    assert len(HITS) + len(CLEAN) >= 60


def test_hits_map_to_the_original_text() -> None:
    text = "Ａ：你这个\u200b王八蛋！　B: you ＡＳＳ."
    hits = find_abuse(text)
    assert hits == [AbuseHit("王八蛋", 6, 9), AbuseHit("ass", 18, 21)]  # not the zero-width
    assert [text[h.start : h.end] for h in hits] == ["王八蛋", "ＡＳＳ"]


def test_find_abuse_does_not_change_the_text() -> None:
    text = "傻 逼客服"
    find_abuse(text)
    assert text == "傻 逼客服"


def test_every_active_term_finds_itself() -> None:
    for term in abuse.active_terms():
        assert [h.term for h in find_abuse(term)] == [term], term
        assert [h.term for h in find_abuse(f"评价：{term}。")] == [term], term


# ---------------------------------------------------------------------------
# The lists: vendored copies equal the pinned package, the portal files stay sane
# ---------------------------------------------------------------------------


def package_dir() -> Path:
    """node_modules/naughty-words (``make setup``); in CI its absence is a failure."""
    path = repo_root() / "node_modules" / PACKAGE
    if not (path / "package.json").is_file():
        message = f"{path} missing: run `make setup` (npm ci)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_pin_is_exact_and_installed() -> None:
    pinned = json.loads((repo_root() / "package.json").read_text(encoding="utf-8"))
    version = pinned["dependencies"][PACKAGE]
    assert version == "1.2.0", "an exact version; see docs/screening.md to update"
    lock = json.loads((repo_root() / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"][f"node_modules/{PACKAGE}"]["version"] == version
    installed = json.loads((package_dir() / "package.json").read_text(encoding="utf-8"))
    assert installed["version"] == version
    assert installed["license"] == "CC-BY-4.0"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_vendored_list_equals_the_package(lang: str) -> None:
    upstream = json.loads((package_dir() / f"{lang}.json").read_text(encoding="utf-8"))
    vendored = abuse.read_terms(abuse.DATA_DIR / f"ldnoobw-{lang}.txt")
    assert vendored == upstream, f"re-vendor ldnoobw-{lang}.txt (docs/screening.md)"


def test_vendored_lists_are_plain_terms() -> None:
    for name in abuse.UPSTREAM_FILES:
        lines = (abuse.DATA_DIR / name).read_text(encoding="utf-8").split("\n")
        assert lines[-1] == "" and all(line and line == line.strip() for line in lines[:-1])


def test_skipped_terms_are_still_upstream() -> None:
    upstream = {t for name in abuse.UPSTREAM_FILES for t in abuse.read_terms(abuse.DATA_DIR / name)}
    skipped = abuse.read_terms(abuse.DATA_DIR / abuse.SKIP_FILE)
    assert skipped and not [t for t in skipped if t not in upstream]
    assert not set(skipped) & set(abuse.active_terms())


def test_supplement_is_short_and_new() -> None:
    upstream = {t for name in abuse.UPSTREAM_FILES for t in abuse.read_terms(abuse.DATA_DIR / name)}
    for name in abuse.SUPPLEMENT_FILES:
        terms = abuse.read_terms(abuse.DATA_DIR / name)
        assert 0 < len(terms) <= 40, name
        assert len(set(terms)) == len(terms), name
        assert not set(terms) & upstream, f"{name}: already upstream"


def test_legitimate_complaint_words_are_never_listed() -> None:
    active = set(abuse.active_terms())
    for word in [
        "骗子",
        "欺骗",
        "投诉",
        "垃圾",
        "垃圾服务",
        "黑心",
        "无良",
        "流氓",
        "去死",
        "尼玛",
    ]:
        assert word not in active, word


def test_data_files_have_a_readme_with_the_licence() -> None:
    readme = (abuse.DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert "naughty-words" in readme and "1.2.0" in readme
    assert "CC-BY-4.0" in readme and "creativecommons.org/licenses/by/4.0" in readme
