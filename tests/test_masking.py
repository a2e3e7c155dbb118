"""Masking of personal data in review texts (moderation.masking)."""

from __future__ import annotations

import ast
import random
import re
import sys
import unicodedata
from datetime import datetime, timedelta, timezone

import pytest

from moderation import masking
from moderation.masking import Match, find, mask
from tests.conftest import repo_root

# ---------------------------------------------------------------------------
# Test data computed here, independently of the module under test
# ---------------------------------------------------------------------------

_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _W, strict=True)) % 11]


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def luhn_complete(partial: str) -> str:
    """*partial* + the Luhn check digit."""
    return next(partial + d for d in "0123456789" if luhn_valid(partial + d))


def resident_id(region: str, birth: str, seq: str) -> str:
    return region + birth + seq + id_check(region + birth + seq)


def wrong_check(number: str, correct: str) -> str:
    """*number* with a wrong last character that does not happen to pass Luhn either."""
    for c in "0123456789X":
        candidate = number[:-1] + c
        if c != correct and not luhn_valid(candidate):
            return candidate
    raise AssertionError("no near miss")


def full_width(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


ID1 = resident_id("110105", "19900307", "123")
ID2 = resident_id("430102", "19781231", "047")
# an ID whose check character is X, and one that is also Luhn-valid (ID must win)
ID_X = next(
    n
    for n in (resident_id("440305", "20010615", f"{s:03d}") for s in range(999))
    if n.endswith("X")
)
ID_LUHN = next(
    n for n in (resident_id("320102", "19850615", f"{s:03d}") for s in range(999)) if luhn_valid(n)
)
CARD16 = luhn_complete("622202123456789")
CARD19 = luhn_complete("621700000012345678")
CARD_VISA = luhn_complete("411111111111111")

PHONE = "13800001234"


def star_middle(s: str, head: int, tail: int) -> str:
    return s[:head] + "*" * (len(s) - head - tail) + s[len(s) - tail :]


# ---------------------------------------------------------------------------
# Positive cases: (text, expected masked text, expected kinds)
# ---------------------------------------------------------------------------

POSITIVE: list[tuple[str, str, list[str]]] = [
    # mobile
    (PHONE, "138****1234", ["mobile"]),
    ("138 0000 1234", "138 **** 1234", ["mobile"]),
    ("138-0000-1234", "138-****-1234", ["mobile"]),
    ("+86 13800001234", "+86 138****1234", ["mobile"]),
    ("+8613800001234", "+86138****1234", ["mobile"]),
    ("8613800001234", "86138****1234", ["mobile"]),
    ("0086 138-0000-1234", "0086 138-****-1234", ["mobile"]),
    ("19912345678", "199****5678", ["mobile"]),
    ("电话：13800001234。", "电话：138****1234。", ["mobile"]),
    ("打我电话13800001234，谢谢", "打我电话138****1234，谢谢", ["mobile"]),
    (full_width(PHONE), "１３８****１２３４", ["mobile"]),
    ("手机（13800001234）", "手机（138****1234）", ["mobile"]),
    # landline
    ("010-12345678", "010-******78", ["landline"]),
    ("01012345678", "010******78", ["landline"]),
    ("(0731)2345678", "(0731)*****78", ["landline"]),
    ("0731 2345678-123", "0731 *****78-123", ["landline"]),
    ("021 87654321转806", "021 ******21转806", ["landline"]),
    ("柜台电话：0755-26543210。", "柜台电话：0755-******10。", ["landline"]),
    ("（０７３１）２３４５６７８", "（０７３１）*****７８", ["landline"]),
    # resident ID
    (ID1, star_middle(ID1, 3, 2), ["id_card"]),
    (ID2, star_middle(ID2, 3, 2), ["id_card"]),
    (ID_X, star_middle(ID_X, 3, 2), ["id_card"]),
    (ID_X.lower(), star_middle(ID_X.lower(), 3, 2), ["id_card"]),
    (ID_LUHN, star_middle(ID_LUHN, 3, 2), ["id_card"]),
    (f"身份证号：{ID1}，", f"身份证号：{star_middle(ID1, 3, 2)}，", ["id_card"]),
    (f"{ID1[:6]} {ID1[6:14]} {ID1[14:]}", f"{ID1[:3]}*** ******** **{ID1[16:]}", ["id_card"]),
    (full_width(ID2), star_middle(full_width(ID2), 3, 2), ["id_card"]),
    # bank card
    (CARD16, star_middle(CARD16, 0, 4), ["bank_card"]),
    (CARD19, star_middle(CARD19, 0, 4), ["bank_card"]),
    (CARD_VISA, star_middle(CARD_VISA, 0, 4), ["bank_card"]),
    (
        " ".join(CARD16[i : i + 4] for i in range(0, 16, 4)),
        "**** **** **** " + CARD16[-4:],
        ["bank_card"],
    ),
    (
        "-".join(CARD19[i : i + 4] for i in range(0, 19, 4)),
        f"****-****-****-***{CARD19[-4]}-{CARD19[-3:]}",  # the last 4 digits, not characters
        ["bank_card"],
    ),
    (f"卡号：{CARD16}。", f"卡号：{star_middle(CARD16, 0, 4)}。", ["bank_card"]),
    (full_width(CARD16), star_middle(full_width(CARD16), 0, 4), ["bank_card"]),
    # e-mail
    ("zhang@example.com", "z***@example.com", ["email"]),
    ("user.name+tag@mail.example.cn", "u***@mail.example.cn", ["email"]),
    ("邮箱：kehu12@example.org，有问题联系", "邮箱：k***@example.org，有问题联系", ["email"]),
    ("发邮件到a@example.net。", "发邮件到a***@example.net。", ["email"]),
    (f"{PHONE}@163.com", "1***@163.com", ["email"]),
    ("ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ｚ***＠ｅｘａｍｐｌｅ．ｃｏｍ", ["email"]),
]


@pytest.mark.parametrize(("text", "expected", "kinds"), POSITIVE)
def test_positive(text: str, expected: str, kinds: list[str]) -> None:
    assert mask(text) == expected
    found = find(text)
    assert [m.kind for m in found] == kinds
    for m in found:
        assert text[m.start : m.end] == m.original


# ---------------------------------------------------------------------------
# Negative cases: must come out unchanged
# ---------------------------------------------------------------------------

AMOUNTS_AND_DATES = [
    "赔了 12000 元",
    "2026-11-21",
    "等了 15 天",
    "保单号后四位 1234",
    "保费 3980.50 元",
    "20261121",
    "2026年11月21日上午 10:30 到的网点",
    "¥12,000.00，免赔额 0.5%，第 3 次催办",
    "理赔款 128000.00 元于 2026/11/21 到账",
    "报案号后六位 654321，车牌尾号 1234",
]

NEGATIVE = [
    *AMOUNTS_AND_DATES,
    # mobile near misses
    "12345678901",  # 12 is not a mobile prefix
    "1380000123",  # 10 digits
    "138000012345",  # 12 digits
    "99913800001234567890",  # 11 digits inside a 20-digit run
    "A13800001234",
    "13800001234B",
    "0.13800001234",
    "138 0000 123",
    # landline near misses
    "0731-123456",  # 6-digit subscriber number
    "0123456789",  # 012 is not an area code
    "400-820-8820",  # service hotline, not personal
    "95500",
    # resident ID near misses: wrong check digit, impossible or future birth date
    wrong_check(ID1, ID1[-1]),
    wrong_check(ID_X, "X"),
    *(
        n
        for n in (
            resident_id("110105", "19901332", "123"),
            resident_id("110105", "20990101", "123"),
            resident_id("110105", "18500101", "123"),
        )
        if not luhn_valid(n)
    ),
    "X" + ID1,
    next(ID1 + d for d in "0123456789" if not luhn_valid(ID1 + d)),  # 19 digits
    # bank card near misses: wrong Luhn digit, too short, too long, inside a longer run
    CARD16[:-1] + str((int(CARD16[-1]) + 1) % 10),
    CARD19[:-1] + str((int(CARD19[-1]) + 5) % 10),
    luhn_complete("41111111111111"),  # 15 digits
    luhn_complete("6222021234567890123"),  # 20 digits
    "NO" + CARD16,
    # e-mail near misses
    "@张三 说得对",
    "a@b",
    "example.com",
    "价格@100元",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative(text: str) -> None:
    assert find(text) == []
    assert mask(text) == text


def test_near_misses_really_are_near() -> None:
    """The wrong-check-digit cases differ from a valid number in one character only."""
    near = wrong_check(ID1, ID1[-1])
    assert near[:17] == ID1[:17] and near != ID1 and mask(ID1) != ID1


# ---------------------------------------------------------------------------
# Policy numbers (insurer-configured formats)
# ---------------------------------------------------------------------------

POLICY = (re.compile(r"P\d{12}"),)


def test_policy_numbers_only_with_a_pattern() -> None:
    text = "保单号P202611210001，已退保。"
    assert mask(text) == text
    assert mask(text, policy_patterns=POLICY) == "保单号*********0001，已退保。"
    assert [m.kind for m in find(text, POLICY)] == ["policy"]


def test_policy_numbers_are_bounded_and_normalised() -> None:
    assert mask("XP202611210001", policy_patterns=POLICY) == "XP202611210001"
    assert mask("P20261121000", policy_patterns=POLICY) == "P20261121000"
    assert mask("P2026112100012", policy_patterns=POLICY) == "P2026112100012"
    assert mask(full_width("P202611210001"), policy_patterns=POLICY) == "*********０００１"
    # several patterns, one with a global inline flag (cannot be wrapped, checked by hand)
    pats = (re.compile(r"(?i)p\d{12}"), re.compile(r"BD-\d{4}-\d{6}"))
    text = "p202611210001 和 BD-2026-123456 还有 xp202611210001"
    assert mask(text, pats) == "*********0001 和 **-****-**3456 还有 xp202611210001"


# ---------------------------------------------------------------------------
# Overlaps, several items, idempotence
# ---------------------------------------------------------------------------


def test_several_items_in_one_text() -> None:
    text = (
        f"我叫张三，身份证{ID1}，手机 138-0000-1234，座机(0731)2345678，"
        f"卡号 {CARD16}，邮箱 zhang3@example.com。赔了 12000 元，等了 15 天。"
    )
    expected = (
        f"我叫张三，身份证{star_middle(ID1, 3, 2)}，手机 138-****-1234，座机(0731)*****78，"
        f"卡号 {star_middle(CARD16, 0, 4)}，邮箱 z***@example.com。赔了 12000 元，等了 15 天。"
    )
    assert mask(text) == expected
    found = find(text)
    assert [m.kind for m in found] == ["id_card", "mobile", "landline", "bank_card", "email"]
    assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False))
    assert all(isinstance(m, Match) and text[m.start : m.end] == m.original for m in found)


def test_most_specific_kind_wins() -> None:
    assert luhn_valid(ID_LUHN)
    assert [m.kind for m in find(ID_LUHN)] == ["id_card"]
    assert [m.kind for m in find(f"{PHONE}@example.com")] == ["email"]


def test_idempotent() -> None:
    texts = [t for t, _, _ in POSITIVE] + NEGATIVE
    texts.append("、".join(t for t, _, _ in POSITIVE))
    for t in texts:
        once = mask(t)
        assert mask(once) == once, t
        assert mask(mask(t, POLICY), POLICY) == mask(t, POLICY)


def test_empty_and_plain_text() -> None:
    assert mask("") == "" and find("") == []
    plain = "柜台的王姐很耐心，材料一次就交齐了。"
    assert mask(plain) == plain


def test_normalisation_keeps_other_characters() -> None:
    text = "①②③ x² 只是编号…… 全角空格\u3000和１２３"
    assert mask(text) == text
    assert unicodedata.normalize("NFKC", text) != text  # the text really has NFKC changes


def test_module_uses_only_the_standard_library() -> None:
    tree = ast.parse((repo_root() / "moderation/masking.py").read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    roots = {name.split(".")[0] for name in names} - {"__future__"}
    assert roots <= sys.stdlib_module_names, roots - sys.stdlib_module_names
    assert masking.__all__  # the module imports cleanly


# ---------------------------------------------------------------------------
# Property check over the demo review generator
# ---------------------------------------------------------------------------

_ANY_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9][ -]?[0-9]{4}[ -]?[0-9]{4}(?![0-9])")
_ANY_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def test_demo_reviews_have_no_mobile_or_email_left() -> None:
    from portal.demo_data import ratings

    end = datetime.now(timezone(timedelta(hours=8)))
    texts = [r.text for r in ratings(random.Random(1), 20_000, end) if r.text]
    changed = 0
    for text in texts:
        masked = mask(text)
        norm = unicodedata.normalize("NFKC", masked)
        assert not _ANY_MOBILE.search(norm), text
        assert not _ANY_EMAIL.search(norm), text
        # the demo texts carry no other personal data: nothing else is touched
        assert {m.kind for m in find(text)} <= {"mobile", "email"}, text
        assert mask(masked) == masked
        changed += masked != text
    assert texts and 0 < changed < len(texts) * 0.05
