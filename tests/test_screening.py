"""Screening before publication (moderation.screening): masking and abuse together."""

from __future__ import annotations

import dataclasses
import re

import pytest

from moderation import masking
from moderation.screening import Screened, screen

PHONE = "13800001234"

CASES: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    # (text, shown, personal_data, abuse)
    ("理赔很快，客服态度好", "理赔很快，客服态度好", (), ()),
    (f"电话 {PHONE}，回个电话", "电话 138****1234，回个电话", ("mobile",), ()),
    ("你这个王八蛋", "你这个王八蛋", (), ("王八蛋",)),
    (
        f"业务员王八蛋，电话{PHONE}，邮箱 zhang@example.com，傻 逼",
        "业务员王八蛋，电话138****1234，邮箱 z***@example.com，傻 逼",
        ("mobile", "email"),
        ("王八蛋", "傻逼"),
    ),
    # abuse is listed once per term, in order of first occurrence
    ("傻逼客服，王八蛋经理，傻*逼公司", "傻逼客服，王八蛋经理，傻*逼公司", (), ("傻逼", "王八蛋")),
    ("", "", (), ()),
]


@pytest.mark.parametrize(("text", "shown", "personal_data", "abuse"), CASES)
def test_screen(
    text: str, shown: str, personal_data: tuple[str, ...], abuse: tuple[str, ...]
) -> None:
    result = screen(text)
    assert result == Screened(shown=shown, personal_data=personal_data, abuse=abuse)
    assert result.needs_review is bool(abuse)
    assert result.shown == masking.mask(text)


def test_the_stored_text_is_never_changed() -> None:
    text = f"傻 逼客服！电话 {PHONE}"
    before = str(text)
    result = screen(text)
    assert text == before
    assert result.shown != text  # masked for display and search only


def test_abuse_is_flagged_not_dropped() -> None:
    result = screen("理赔拖了三个月，客服是个混蛋，至今没有答复")
    assert result.needs_review
    assert result.shown == "理赔拖了三个月，客服是个混蛋，至今没有答复"  # nothing removed


def test_policy_patterns_are_passed_on() -> None:
    text = "保单号 P202601010001，傻逼"
    result = screen(text, policy_patterns=(re.compile(r"P\d{12}"),))
    assert result.shown == "保单号 *********0001，傻逼"
    assert result.personal_data == ("policy",)
    assert result.needs_review
    assert screen(text, policy_patterns=[r"P\d{12}"]) == result


def test_abuse_is_found_in_what_was_written_not_in_the_masked_form() -> None:
    # masking an e-mail address must not hide a term, nor create one
    result = screen("fuck@example.com 和 bitch")
    assert result.shown.startswith("f***@example.com")
    assert result.abuse == ("fuck", "bitch")


def test_personal_data_without_abuse_needs_no_review() -> None:
    assert not screen(f"我的手机 {PHONE}").needs_review


def test_screened_is_frozen() -> None:
    result = screen("hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.shown = "x"  # type: ignore[misc]


def test_flagging_finds_exactly_the_terms_screen_finds() -> None:
    """flag_texts skips the masking it does not need; the terms must be screen()'s."""
    import random

    from moderation.flags import abuse_terms
    from portal.demo_data import review_text

    rng = random.Random(3)
    texts = [c[0] for c in CASES] + ["fuck@example.com 和 bitch", f"傻 逼客服！电话 {PHONE}"]
    texts += [review_text(rng, "claim", rng.randint(1, 5)) for _ in range(200)]
    for text in texts:
        assert tuple(abuse_terms(text)) == screen(text).abuse
