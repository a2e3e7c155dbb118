"""Tests for the fictional demo data generator (portal.demo_data)."""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime, time, timedelta, timezone

import pytest

from portal import demo_data as dd

CST = timezone(timedelta(hours=8))
END = datetime(2025, 6, 30, 15, 45, 12, tzinfo=CST)
N = 6000

# Brands of real insurers that must never appear as names or in texts.
REAL_BRANDS = (
    "平安",
    "人保",
    "人寿",
    "国寿",
    "太平洋",
    "太保",
    "泰康",
    "新华",
    "大地",
    "阳光",
    "华泰",
    "中华联合",
    "天安",
    "永安",
    "安邦",
    "众安",
    "友邦",
    "太平",
    "中邮",
    "英大",
    "华安",
    "华夏",
    "合众",
    "富德",
    "前海",
    "长城",
    "信泰",
    "恒大",
    "中宏",
    "招商信诺",
    "安盛",
    "紫金",
    "安诚",
    "永诚",
    "渤海",
    "国元",
    "锦泰",
    "利宝",
)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
PII = re.compile(r"138[- ]?0000[- ]?\d{4}|[\w.]+@example\.(?:com|cn|org|net)")
CJK_NAME = re.compile(r"^[\u4e00-\u9fff]{2,3}$")


def normalized(r: dd.DemoRating) -> int:
    """Score on a 1..5 scale, 5 best (scale 3: 1 satisfied, 3 dissatisfied)."""
    return r.value if r.scale == 5 else {1: 5, 2: 3, 3: 1}[r.value]


@pytest.fixture(scope="module")
def staff_list() -> list[dd.DemoStaff]:
    return dd.staff(random.Random(7))


@pytest.fixture(scope="module")
def sample(staff_list: list[dd.DemoStaff]) -> list[dd.DemoRating]:
    return list(dd.ratings(random.Random(42), N, END, staff_list=staff_list))


@pytest.fixture(scope="module")
def texts() -> list[tuple[str, int, str]]:
    rng = random.Random(2024)
    cities = [None, "株洲", "杭州", "成都"]
    out = []
    for _ in range(20_000):
        stage = rng.choice(dd.STAGES)
        stars = rng.randint(1, 5)
        kind = rng.choice(("property", "life"))
        out.append((dd.review_text(rng, stage, stars, kind, city=rng.choice(cities)), stars, stage))
    return out


# --- reference data ----------------------------------------------------------


def test_insurers() -> None:
    ins = dd.insurers()
    assert 8 <= len(ins) <= 10
    assert len({i.code for i in ins}) == len(ins)
    assert len({i.name for i in ins}) == len(ins)
    for i in ins:
        assert re.fullmatch(r"[A-Z]{2,4}", i.code)
        assert 0.0 <= i.quality <= 1.0
    kinds = Counter(dd.insurer_kind(i.code) for i in ins)
    assert kinds["property"] >= 3 and kinds["life"] >= 3
    assert max(i.quality for i in ins) - min(i.quality for i in ins) >= 0.4


def test_branches() -> None:
    ins = {i.code: i for i in dd.insurers()}
    brs = dd.branches()
    per_insurer = Counter(b.insurer_code for b in brs)
    assert set(per_insurer) == set(ins)
    assert all(2 <= c <= 4 for c in per_insurer.values())
    assert len({b.code for b in brs}) == len(brs)
    for b in brs:
        assert re.fullmatch(rf"{b.insurer_code}-[A-Z]{{2,3}}\d\d", b.code)
        assert re.fullmatch(r"\d{6}", b.region)
        assert b.region in dd.REGIONS
        assert b.name.startswith(ins[b.insurer_code].name)
        assert b.name.endswith(("分公司", "中心支公司"))
    assert len({b.region[:2] for b in brs}) >= 8
    # spot-check that region codes carry the right names
    assert dd.REGIONS["430200"].endswith("株洲市")
    assert dd.REGIONS["440300"].endswith("深圳市")
    assert dd.REGIONS["110000"] == "北京市"
    assert "华兴示范财险株洲中心支公司" in {b.name for b in brs}


def test_staff(staff_list: list[dd.DemoStaff]) -> None:
    assert dd.staff(random.Random(7)) == staff_list
    brs = dd.branches()
    first_branch = {}
    for b in brs:
        first_branch.setdefault(b.insurer_code, b.code)
    per_branch_role = Counter((s.branch_code, s.role) for s in staff_list)
    for b in brs:
        assert 3 <= per_branch_role[(b.code, "teller")] <= 6
        assert 2 <= per_branch_role[(b.code, "agent")] <= 4
        assert 1 <= per_branch_role[(b.code, "adjuster")] <= 2
        calls = per_branch_role[(b.code, "call_agent")]
        if b.code == first_branch[b.insurer_code]:
            assert 4 <= calls <= 8
        else:
            assert calls == 0
    branch_by_code = {b.code: b for b in brs}
    numbers = Counter((s.insurer_code, s.staff_no) for s in staff_list)
    assert max(numbers.values()) == 1
    for s in staff_list:
        assert s.role in dd.ROLES
        branch = branch_by_code[s.branch_code]
        assert branch.insurer_code == s.insurer_code
        letters = branch.code.split("-")[1][:-2]
        assert re.fullmatch(rf"{letters}\d{{4}}", s.staff_no)
        assert CJK_NAME.match(s.name), s.name


# --- ratings ----------------------------------------------------------------


def test_deterministic(staff_list: list[dd.DemoStaff]) -> None:
    a = list(dd.ratings(random.Random(5), 800, END, staff_list=staff_list))
    b = list(dd.ratings(random.Random(5), 800, END, staff_list=staff_list))
    c = list(dd.ratings(random.Random(6), 800, END, staff_list=staff_list))
    assert a == b
    assert a != c
    # without a staff list the staff are drawn from the same rng: still deterministic
    assert list(dd.ratings(random.Random(5), 50, END)) == list(
        dd.ratings(random.Random(5), 50, END)
    )


@pytest.mark.parametrize("n", [0, 1, 5, 9, 37])
def test_exact_count(n: int, staff_list: list[dd.DemoStaff]) -> None:
    assert len(list(dd.ratings(random.Random(n), n, END, staff_list=staff_list))) == n


def test_small_sample_is_complete(staff_list: list[dd.DemoStaff]) -> None:
    rs = list(dd.ratings(random.Random(1), 9, END, staff_list=staff_list))
    assert {r.insurer_code for r in rs} == {i.code for i in dd.insurers()}
    assert {(r.channel, r.stage) for r in rs} == {(c, s) for c in dd.CHANNELS for s in dd.STAGES}


def test_coverage_and_mix(sample: list[dd.DemoRating]) -> None:
    assert len(sample) == N
    assert {r.stage for r in sample} == set(dd.STAGES)
    assert {r.insurer_code for r in sample} == {i.code for i in dd.insurers()}
    channels = Counter(r.channel for r in sample)
    assert set(channels) == set(dd.CHANNELS)
    assert 0.35 <= channels["counter"] / N <= 0.45
    assert 0.30 <= channels["phone"] / N <= 0.40
    assert 0.20 <= channels["web"] / N <= 0.30
    for channel in dd.CHANNELS:
        assert {r.stage for r in sample if r.channel == channel} == set(dd.STAGES)


def test_channel_rules(sample: list[dd.DemoRating], staff_list: list[dd.DemoStaff]) -> None:
    staff_by_key = {(s.insurer_code, s.staff_no): s for s in staff_list}
    branch_by_code = {b.code: b for b in dd.branches()}
    phone_scales: Counter[int] = Counter()
    web = [r for r in sample if r.channel == "web"]
    for r in sample:
        assert r.stage in dd.STAGES
        assert r.value in range(1, r.scale + 1)
        if r.branch_code is not None:
            assert branch_by_code[r.branch_code].insurer_code == r.insurer_code
        member = None
        if r.staff_no is not None:
            member = staff_by_key[(r.insurer_code, r.staff_no)]  # belongs to the insurer
            assert r.branch_code == member.branch_code
        if r.channel == "counter":
            assert r.scale == 3
            assert member is not None and member.role == "teller"
            assert r.text is None and r.verified is True
        elif r.channel == "phone":
            assert r.scale in (3, 5)
            phone_scales[r.scale] += 1
            assert member is not None
            assert r.text is None and r.verified is True
            if member.role != "call_agent":
                assert (r.stage, member.role) in {("issuance", "agent"), ("claim", "adjuster")}
        else:
            assert r.channel == "web"
            assert r.scale == 5
            if member is not None:
                assert member.role in ("agent", "teller", "adjuster")
            if r.branch_code is None:
                assert r.staff_no is None
    phone_total = sum(phone_scales.values())
    assert 0.62 <= phone_scales[5] / phone_total <= 0.78
    phone_roles = Counter(
        staff_by_key[(r.insurer_code, r.staff_no)].role
        for r in sample
        if r.channel == "phone" and r.staff_no is not None
    )
    assert set(phone_roles) == {"call_agent", "agent", "adjuster"}
    assert 0.6 <= sum(r.text is not None for r in web) / len(web) <= 0.8
    assert 0.5 <= sum(r.branch_code is not None for r in web) / len(web) <= 0.7
    assert 0.78 <= sum(r.verified for r in web) / len(web) <= 0.92


def test_occurred_at(sample: list[dd.DemoRating]) -> None:
    start = datetime(2023, 12, 30, 15, 45, 12, tzinfo=CST)  # 18 months before END
    times = [r.occurred_at for r in sample]
    assert times == sorted(times)
    for r in sample:
        t = r.occurred_at
        assert t.tzinfo is not None and t.utcoffset() == timedelta(hours=8)
        assert start <= t <= END
        local = t.timetz().replace(tzinfo=None)
        assert time(8, 30) <= local <= time(21, 0)
        if r.channel == "counter":
            assert local <= time(17, 30)
    months = Counter((t.year, t.month) for t in times)
    assert len(months) >= 18
    early = months[(2024, 1)] + months[(2024, 2)] + months[(2024, 3)]
    late = months[(2025, 3)] + months[(2025, 4)] + months[(2025, 5)]
    assert late > early * 1.15
    daytime = sum(time(9) <= t.time() < time(18) for t in times)
    assert daytime / len(times) > 0.7


def test_naive_end_and_bad_arguments() -> None:
    naive = datetime(2025, 1, 10, 9, 0)
    rs = list(dd.ratings(random.Random(3), 300, naive, months=2))
    assert all(r.occurred_at <= naive.replace(tzinfo=CST) for r in rs)
    with pytest.raises(ValueError):
        dd.ratings(random.Random(3), -1, END)
    with pytest.raises(ValueError):
        dd.ratings(random.Random(3), 10, END, months=0)
    with pytest.raises(ValueError):
        dd.ratings(random.Random(3), 10, END, staff_list=[])


def test_quality_and_stage_drive_satisfaction(sample: list[dd.DemoRating]) -> None:
    quality = {i.code: i.quality for i in dd.insurers()}
    scores: dict[str, list[int]] = defaultdict(list)
    for r in sample:
        scores[r.insurer_code].append(normalized(r))
    means = {code: statistics.fmean(v) for code, v in scores.items()}
    best = max(quality, key=quality.__getitem__)
    worst = min(quality, key=quality.__getitem__)
    assert means[best] - means[worst] > 1.0
    ranked = sorted(means, key=means.__getitem__)
    assert worst in ranked[:2] and best in ranked[-2:]
    # Spearman rank correlation between quality and observed mean satisfaction
    by_quality = sorted(quality, key=quality.__getitem__)
    k = len(ranked)
    d2 = sum((by_quality.index(code) - ranked.index(code)) ** 2 for code in quality)
    assert 1 - 6 * d2 / (k * (k * k - 1)) > 0.8
    by_stage = {
        s: statistics.fmean(normalized(r) for r in sample if r.stage == s) for s in dd.STAGES
    }
    assert by_stage["claim"] < by_stage["issuance"] - 0.2


# --- texts --------------------------------------------------------------------


def test_texts_shape_and_distinct(texts: list[tuple[str, int, str]]) -> None:
    bodies = [t for t, _s, _st in texts]
    assert all(0 < len(t) <= 2000 for t in bodies)
    assert not any(CONTROL.search(t) for t in bodies)
    assert not any("{" in t or "}" in t for t in bodies)
    assert len(set(bodies)) / len(bodies) >= 0.9
    lengths = [len(t) for t in bodies]
    assert min(lengths) < 12 and max(lengths) > 120  # short ones and long ones
    pii = sum(bool(PII.search(t)) for t in bodies) / len(bodies)
    assert 0.008 <= pii <= 0.04


def test_fragment_tags_match_stars() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        stage = rng.choice(dd.STAGES)
        stars = rng.randint(1, 5)
        parts = dd.review_parts(rng, stage, stars, rng.choice(("property", "life")))
        tags = {p.tag for p in parts}
        assert tags <= set(dd.TAGS)
        if stars == 5:
            assert tags <= {"pos", "neu"}
            assert "pos" in tags
        elif stars == 4:
            assert "neg" not in tags and "pos" in tags
        elif stars == 3:
            assert "mix" in tags or {"pos", "neg"} <= tags
        else:
            assert "pos" not in tags and "neg" in tags


def test_text_sentiment_markers(
    sample: list[dd.DemoRating], texts: list[tuple[str, int, str]]
) -> None:
    rated = [(r.text, r.value) for r in sample if r.text is not None]
    checked = rated + [(t, s) for t, s, _st in texts[:3000]]
    low_with_neg = low = 0
    for text, stars in checked:
        found = dd.sentiments_in(text)
        if stars <= 2:
            low += 1
            low_with_neg += "neg" in found
            assert "pos" not in found, text
        elif stars == 5:
            assert "neg" not in found, text
    assert low_with_neg / low > 0.8  # the markers really detect complaints


def test_no_real_company_names(
    sample: list[dd.DemoRating], texts: list[tuple[str, int, str]], staff_list: list[dd.DemoStaff]
) -> None:
    haystacks = [i.name for i in dd.insurers()]
    haystacks += [b.name for b in dd.branches()]
    haystacks += [s.name for s in staff_list]
    haystacks += [r.text for r in sample if r.text]
    haystacks += [t for t, _s, _st in texts]
    blob = "\n".join(haystacks)
    for brand in REAL_BRANDS:
        assert brand not in blob, brand
