"""Fictional but realistic demo data for the Gongping (公评) portal.

Everything here is pure and deterministic given a :class:`random.Random`: no I/O, no
database, stdlib only.  All insurers, branches, staff members and reviews are invented.
Insurer names are deliberately made up (several carry the word 示范, "demo") and never
reuse the brand of a real insurance company; staff names are random combinations of
common surname and given-name characters.

Public API
----------
* :func:`insurers`, :func:`branches`, :func:`staff`, :func:`ratings` build the data set.
* :func:`review_text` / :func:`review_parts` compose a single Chinese web review.
  Every fragment of a review carries a sentiment tag (``pos`` praise only, ``neg``
  complaint only, ``mix`` both / lukewarm, ``neu`` factual), see :class:`ReviewPart`.
* :func:`sentiments_in` recovers the ``pos``/``neg`` tags from a finished text through
  per-fragment marker strings, which lets tests verify star/text consistency.
* :data:`REGIONS` documents the GB/T 2260 city-level region codes used by branches.

Review texts occasionally (about 2 %) contain a fictional phone number from the
``1380000xxxx`` test range or an ``example.com``-style e-mail address so that the
moderation pipeline has something to mask.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_right
from calendar import monthrange
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from itertools import accumulate

__all__ = [
    "CHANNELS",
    "CST",
    "REGIONS",
    "ROLES",
    "STAGES",
    "TAGS",
    "DemoBranch",
    "DemoInsurer",
    "DemoRating",
    "DemoStaff",
    "ReviewPart",
    "branches",
    "insurer_kind",
    "insurers",
    "ratings",
    "review_parts",
    "review_text",
    "sentiments_in",
    "staff",
]

CST = timezone(timedelta(hours=8), "CST")
STAGES: tuple[str, ...] = ("issuance", "renewal", "claim")
CHANNELS: tuple[str, ...] = ("counter", "phone", "web")
ROLES: tuple[str, ...] = ("teller", "agent", "call_agent", "adjuster")
KINDS: tuple[str, ...] = ("property", "life")
TAGS: tuple[str, ...] = ("pos", "neg", "mix", "neu")
MAX_TEXT_LEN = 2000


@dataclass(frozen=True)
class DemoInsurer:
    code: str
    name: str
    quality: float


@dataclass(frozen=True)
class DemoBranch:
    insurer_code: str
    code: str
    name: str
    region: str


@dataclass(frozen=True)
class DemoStaff:
    insurer_code: str
    branch_code: str
    staff_no: str
    name: str
    role: str


@dataclass(frozen=True)
class DemoRating:
    insurer_code: str
    branch_code: str | None
    staff_no: str | None
    stage: str
    channel: str
    scale: int
    value: int
    occurred_at: datetime
    text: str | None
    verified: bool


@dataclass(frozen=True)
class ReviewPart:
    """One rendered fragment of a review and its sentiment tag (pos/neg/mix/neu)."""

    tag: str
    text: str


# ---------------------------------------------------------------------------
# Regions (GB/T 2260).  Municipalities use their province-level code.
# ---------------------------------------------------------------------------

_PROVINCES: dict[str, str] = {
    "11": "北京市",
    "12": "天津市",
    "13": "河北省",
    "31": "上海市",
    "32": "江苏省",
    "33": "浙江省",
    "34": "安徽省",
    "35": "福建省",
    "37": "山东省",
    "41": "河南省",
    "42": "湖北省",
    "43": "湖南省",
    "44": "广东省",
    "50": "重庆市",
    "51": "四川省",
    "61": "陕西省",
}

# region code -> (city name, short city name, staff-number letters, branch naming style)
# style: "muni" municipality, "cap" provincial capital, "plan" separately planned city
# (计划单列市, has its own 分公司), "city" ordinary prefecture-level city.
_CITIES: dict[str, tuple[str, str, str, str]] = {
    "110000": ("北京市", "北京", "BJ", "muni"),
    "120000": ("天津市", "天津", "TJ", "muni"),
    "130100": ("石家庄市", "石家庄", "SJZ", "cap"),
    "310000": ("上海市", "上海", "SH", "muni"),
    "320100": ("南京市", "南京", "NJ", "cap"),
    "320200": ("无锡市", "无锡", "WX", "city"),
    "320500": ("苏州市", "苏州", "SUZ", "city"),
    "330100": ("杭州市", "杭州", "HZ", "cap"),
    "330200": ("宁波市", "宁波", "NB", "plan"),
    "340100": ("合肥市", "合肥", "HF", "cap"),
    "350100": ("福州市", "福州", "FZ", "cap"),
    "350200": ("厦门市", "厦门", "XM", "plan"),
    "370100": ("济南市", "济南", "JN", "cap"),
    "370200": ("青岛市", "青岛", "QD", "plan"),
    "410100": ("郑州市", "郑州", "ZHZ", "cap"),
    "420100": ("武汉市", "武汉", "WH", "cap"),
    "420500": ("宜昌市", "宜昌", "YC", "city"),
    "430100": ("长沙市", "长沙", "CS", "cap"),
    "430200": ("株洲市", "株洲", "ZZ", "city"),
    "430400": ("衡阳市", "衡阳", "HY", "city"),
    "440100": ("广州市", "广州", "GZ", "cap"),
    "440300": ("深圳市", "深圳", "SZ", "plan"),
    "440600": ("佛山市", "佛山", "FS", "city"),
    "500000": ("重庆市", "重庆", "CQ", "muni"),
    "510100": ("成都市", "成都", "CD", "cap"),
    "510700": ("绵阳市", "绵阳", "MY", "city"),
    "610100": ("西安市", "西安", "XA", "cap"),
}

REGIONS: dict[str, str] = {
    code: f"{_PROVINCES[code[:2]]}{'' if style == 'muni' else city}"
    for code, (city, _short, _abbr, style) in _CITIES.items()
}
"""Region code -> full name (province + city) for every region used by :func:`branches`."""

# ---------------------------------------------------------------------------
# Insurers and branches (all fictional)
# ---------------------------------------------------------------------------

# code, name, quality, kind, volume weight, branch regions (first = head branch)
_INSURER_TABLE: tuple[tuple[str, str, float, str, float, tuple[str, ...]], ...] = (
    ("HX", "华兴示范财险", 0.80, "property", 1.5, ("430100", "430200", "430400", "420100")),
    ("HXCX", "恒信财产保险", 0.52, "property", 1.2, ("310000", "330100", "330200")),
    ("RF", "润丰财险", 0.33, "property", 1.1, ("440100", "440300", "440600")),
    ("JY", "嘉远财产保险", 0.66, "property", 0.9, ("510100", "510700", "500000")),
    ("QL", "青岚示范财险", 0.45, "property", 0.7, ("370100", "370200", "610100")),
    ("AH", "安和寿险", 0.74, "life", 1.4, ("110000", "120000", "130100")),
    ("SHX", "松鹤寿险", 0.58, "life", 1.0, ("320100", "320500", "320200", "340100")),
    ("YK", "颐康示范寿险", 0.90, "life", 0.8, ("330100", "350200", "350100")),
    ("FQ", "福祺人身保险", 0.27, "life", 0.9, ("420100", "420500", "410100")),
)

_KIND_BY_CODE = {row[0]: row[3] for row in _INSURER_TABLE}
_VOLUME_BY_CODE = {row[0]: row[4] for row in _INSURER_TABLE}


def insurers() -> list[DemoInsurer]:
    """The fictional insurers (property 财险 and life 寿险), in a fixed order."""
    return [DemoInsurer(code, name, quality) for code, name, quality, *_ in _INSURER_TABLE]


def insurer_kind(code: str) -> str:
    """``"property"`` or ``"life"`` for a demo insurer code."""
    return _KIND_BY_CODE[code]


def _branch_name(insurer_name: str, region: str) -> str:
    city, short, _abbr, style = _CITIES[region]
    if style in ("muni", "plan"):
        return f"{insurer_name}{short}分公司"
    if style == "cap":
        province = _PROVINCES[region[:2]].removesuffix("省")
        return f"{insurer_name}{province}分公司"
    return f"{insurer_name}{short}中心支公司"


def branches() -> list[DemoBranch]:
    """Two to four branches per insurer; the first branch of an insurer is its head branch."""
    result: list[DemoBranch] = []
    for code, name, _q, _kind, _vol, regions in _INSURER_TABLE:
        for region in regions:
            abbr = _CITIES[region][2]
            result.append(DemoBranch(code, f"{code}-{abbr}01", _branch_name(name, region), region))
    return result


def _branch_city(branch: DemoBranch) -> str:
    return _CITIES[branch.region][1]


def _branch_letters(branch: DemoBranch) -> str:
    return _CITIES[branch.region][2]


# ---------------------------------------------------------------------------
# Staff
# ---------------------------------------------------------------------------

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤"
)
_COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛")
_GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞刚桂慧建文玲红飞鹏宇浩凯俊婷雪琳晨欣怡佳悦子梓涵"
    "睿博思雨萱诗嘉晓志海波辉斌鑫丹倩颖蕾璐瑶晶亮峰毅坤宁远航帆君如云梅兰菊燕凤琴春秋立德荣成"
    "玉振家林彬晗昊泽轩楠琪妍彤曦骏铭哲逸然一欢乐锦诚笑蓉薇婕淑珊莉雯昕"
)


def _person_name(rng: random.Random) -> str:
    if rng.random() < 0.01:
        return rng.choice(_COMPOUND_SURNAMES) + rng.choice(_GIVEN_CHARS)
    given = rng.choice(_GIVEN_CHARS)
    if rng.random() < 0.7:
        given += rng.choice(_GIVEN_CHARS)
    return rng.choice(_SURNAMES) + given


def _surname(name: str) -> str:
    return name[:2] if name[:2] in _COMPOUND_SURNAMES else name[:1]


def _new_member(
    rng: random.Random,
    branch: DemoBranch,
    role: str,
    used_numbers: set[str],
    used_names: set[str],
) -> DemoStaff:
    while True:
        number = f"{_branch_letters(branch)}{rng.randint(1, 9999):04d}"
        if number not in used_numbers:
            break
    while True:
        name = _person_name(rng)
        if name not in used_names:
            break
    used_numbers.add(number)
    used_names.add(name)
    return DemoStaff(branch.insurer_code, branch.code, number, name, role)


def staff(rng: random.Random) -> list[DemoStaff]:
    """Per branch 3-6 tellers, 2-4 agents, 1-2 adjusters; per insurer 4-8 call agents
    attached to the insurer's head (first) branch.  Staff numbers (branch city letters +
    4 digits) and names are unique per insurer."""
    result: list[DemoStaff] = []
    by_insurer: dict[str, list[DemoBranch]] = {}
    for branch in branches():
        by_insurer.setdefault(branch.insurer_code, []).append(branch)
    for branch_list in by_insurer.values():
        numbers: set[str] = set()
        names: set[str] = set()
        for branch in branch_list:
            for role, low, high in (("teller", 3, 6), ("agent", 2, 4), ("adjuster", 1, 2)):
                for _ in range(rng.randint(low, high)):
                    result.append(_new_member(rng, branch, role, numbers, names))
        for _ in range(rng.randint(4, 8)):
            result.append(_new_member(rng, branch_list[0], "call_agent", numbers, names))
    return result


# ---------------------------------------------------------------------------
# Review fragments
# ---------------------------------------------------------------------------
# _BLOCKS keys are "slot stage kind tag" ("*" = any stage / kind).  Each block line is
# "topics|template" (comma-separated topics) or just "template".  Placeholders in
# braces are filled per review (values are cached, so a number or a person stays
# consistent within one review).  Topics keep two fragments about the same thing (or
# contradicting each other, like a fast and a slow payout) out of one review.
# Slots: open, ctx, det, eval / eval_good / eval_mid, close, pii; short reviews use
# subj + verd (+ tail).


@dataclass(frozen=True)
class _Frag:
    slot: str
    stage: str
    kind: str
    tag: str
    topics: frozenset[str]
    template: str


_FRAGMENTS: list[_Frag] = []

_BLOCKS: dict[str, str] = {
    # --- openings
    "open * * pos": """
必须来夸一下！
给个好评，实至名归。
第一次写这么长的评价，真心觉得不错。
说实话本来没抱什么期望，结果挺惊喜。
本来以为保险公司都差不多，这次算是改观了。
先说结论：好评。
来还个愿，之前说办好了一定上来夸夸。
不是托，真实体验分享一下。
很少写评价，这次忍不住要表扬一下。
身边朋友问我哪家靠谱，我都推荐这家，说说原因。
""",
    "open * * neg": """
忍不住来吐槽一下。
真的被气到了，
说说我的糟心经历。
大家买之前一定要看看这条。
本来不想写的，实在忍不了了。
先说结论：不推荐。
憋了好久，今天必须说一说。
避雷帖，
第一次给差评，实在是太离谱了。
心累，
""",
    "open * * mix": """
客观说几句，
说说真实感受吧，有好有坏。
不吹不黑，
优缺点都说一下，
实话实说，
""",
    "open * * neu": """
记录一下。
简单说下经过：
分享一下我的经历，
说一下情况，
补个评价，
之前一直潜水，今天也来说两句。
""",
    # --- contexts (neutral, stage + kind specific)
    "ctx issuance property neu": """
{month}在{where}给{car}买了{prod}，
今年换了新车，第一次在他们家投保，
{month}通过{app}投的{prod}，
朋友推荐的，{month}买了他们家的{prod}，
车是{month}提的，对比了几家报价，最后选了这家，
给家里房子买了份家财险，{month}办的，
公司的团体意外险是他们家承保的，我负责对接，
之前一直在别家买，今年第一次转过来，
{month}在{where}办的投保，
跑网约车需要营运车险，{month}找他们买的，
""",
    "ctx issuance life neu": """
{month}找{agent}给{who2}配了一份{prod}，
给孩子买了份{prod}，{month}签的单，
{month}在{app}上自己投了{prod}，
银行理财经理推荐的年金险，{month}买的，
同事介绍的{agent}，聊了好几次才定下来买{prod}，
三十多岁了想给自己配份重疾，对比了好几家最后选了这家，
{month}去{where}办的投保手续，
给爸妈买的{prod}，年纪大了能选的不多，
孩子刚出生，{month}给孩子上了{prod}，
""",
    "ctx renewal property neu": """
车险{month}到期，今年接着续，
这是在他们家续保的第{yr}年了，
{month}收到续保通知，
家财险到期续保，
hist|去年出了一次险，今年续保，
hist|今年一年没出险，到了续保的时候，
{car}的车险快到期了，
{month}去{where}续的保，
""",
    "ctx renewal life neu": """
保单交到第{yr}年了，
{month}要交续期保费，
之前绑的银行卡注销了，要改扣款账户，
年交保费{prem}，每年{mon_n}扣款，
保单过了宽限期差点失效，
续期缴费一直是自动扣款，
给孩子买的{prod}交到第{yr}年，
""",
    "ctx claim property neu": """
{month}在小区里倒车蹭了柱子，
{month}在高架上被人追尾，对方全责，
{month}下暴雨，车子泡了水，
挡风玻璃被高速上的石子打裂了，
{month}和电动车剐蹭，我这边主责，
家里水管爆了把楼下淹了，买的家财险，
车停在路边被人划了一圈，
{month}开车追尾了前车，我全责，
{month}出了个单方事故，撞了路边护栏，
冬天路滑，{car}蹭了隔离带，
""",
    "ctx claim life neu": """
{who}{month}因为{ill}住院{d_m}天，
{who}做了{surg}手术，用的是他们家的医疗险，
{who}确诊了重疾，申请重疾险理赔，保额{amt_big}，
{who}骑车摔骨折了，走的意外险，
{who}门诊加住院花了{amt}左右，
{who}{month}肺炎住院，有一份他们家的医疗险，
{who}{month}查出{ill}，住了一周院，
""",
    # --- details: claim
    "det claim * pos": """
phone|报案电话一打就通，{cs}很快就把案子登记好了，
docs|需要哪些材料一次性说清楚了，没让我来回跑。
docs|材料清单直接发到手机上，照着准备就行，很省事。
app|在{app}上传照片就行，全程没跑线下。
speed|{d_s}天就到账了，比我预想的快多了。
speed|从报案到赔款到账一共才{d_s}天，
speed|交完材料第{d_s}天就收到了赔款短信，
app|理赔进度在{app}上随时能查，每一步都有短信提醒。
staff|{adj}很有耐心，一项一项帮我核对材料，
staff|{adj}态度特别好，还提醒我哪些费用也能报。
amount|最后赔了{amt}，一分没少。
amount|赔款{amt}直接打到卡上，金额和我自己算的一样。
docs|有张单据弄丢了，{adj}教我怎么补开，没有为难。
speed|周末报的案，当天就有人联系我，
staff|{adj}全程跟进，有问题随时回微信，
phone|中间打过两次客服电话，都是秒接，说得很清楚。
staff|不懂的地方问了好几遍，{adj}都没嫌烦。
amount|本来以为这种情况赔不了，结果按合同全赔了。
speed|说{d_s}个工作日出结果，还真就按时出了。
""",
    "det claim * neg": """
docs|材料交了一遍又一遍，每次都说还缺东西，
docs|前后让我补了{n}次材料，每次只说一样，
speed|报案{d_l}天了还在审核中，问就是在走流程。
speed|等了整整{d_l}天才到账，中间催了{n}次。
phone|打客服电话永远在排队，等了{hold}才转到人工，
staff|{adj}电话经常不接，微信也不回，
terms|一会儿说这个不赔，一会儿说那个不在范围，就是推。
staff|客服和{adj}说法不一样，互相踢皮球，
amount|最后只赔了{cut}，比实际花的少了一大截，
app|{app}上的理赔进度十几天都不更新，
staff|{adj}态度很差，问多了就不耐烦，让我“自己看合同”。
speed|承诺{d_s}个工作日出结果，结果拖了{d_l}天。
staff|换了{n_s}个对接人，每换一个就要从头说一遍，
docs|同一份证明要了两遍，说第一次寄的“找不到了”。
amount|莫名其妙扣了{cut}，问原因也解释不清。
phone|打了{n}次电话，每次都说“已经帮您催办了”，然后就没下文了。
speed|拖到现在{mo}个月了，还是没个准信。
terms|理赔的时候才告诉我这个不在保障范围，买的时候怎么不说？
""",
    "det claim * mix": """
staff|{adj}人挺好的，就是公司流程太慢，
speed|最后钱是赔了，但过程太折腾，
docs|赔的金额还算合理，就是材料要得有点多，
app|线上报案挺方便，后面审核卡了好几天，
speed|到账用了{d_m}天左右，不算快也不算太慢。
amount|金额和预期差了一点，勉强能接受，
phone|电话能打通，但每次都要把情况重新说一遍，
""",
    "det claim property pos": """
survey|报案不到半小时{adj}就到现场了，
survey|现场拍照定损，十几分钟就搞定，
repair|定损价格很公道，修理厂那边也没扯皮。
speed|小额案件直接线上定损，{d_s}天钱就到了。
staff|{adj}帮我跟对方保险公司沟通，省了我不少事。
repair|推荐的合作修理厂修得不错，还能直赔，不用我垫钱。
survey|那几天暴雨报案的人特别多，{adj}还是当天就赶过来了。
survey|在高速上出的事，救援车四十分钟就到了，
repair|修好的车我仔细看了，漆面跟原来的一样。
survey|视频定损，在家等着就行，不用开车跑一趟。
amount|玻璃直接给换了，没花我一分钱。
""",
    "det claim property neg": """
repair|定损压价压得厉害，修理厂报价{amt}，他们只认一半。
survey|等{adj}到现场等了{hrs}，大冷天在路边干等。
amount|让我先垫钱修车，垫了{amt}到现在还没赔下来。
repair|非要去他们指定的修理厂，不然就不给定损。
staff|对方全责，却让我去找对方保险公司，来回踢皮球。
terms|泡水车说是二次点火不赔，当时根本没人告诉我不能打火。
survey|定损员来了拍两张照片就走了，后面再也联系不上。
repair|修了{d_m}天才修好，说是等配件，问了几次都说快了。
survey|现场查勘的人一直在看手机，问什么都说“回去再说”。
amount|车损{amt}，最后按什么“残值”扣了一大块。
""",
    "det claim property mix": """
repair|定损还算公道，就是修理厂排期太长。
survey|{adj}来得挺快，但后面定损价格谈了好几轮，
""",
    "det claim life pos": """
docs|住院发票和出院小结拍照上传就行，原件都不用寄。
speed|赔款{d_m}天就到账了，这笔钱关键时刻真的救急。
staff|{adj}还打电话问{who}恢复得怎么样，挺暖心的。
amount|医保报完剩下的部分基本都赔了，
speed|本以为要调查很久，结果{d_s}个工作日就结案了。
amount|医保外的自费药也按合同赔了，
staff|{adj}上门收的材料，家里老人行动不方便，这点很贴心。
docs|缺了一份费用清单，{adj}直接帮忙联系医院补的。
amount|住院花了{amt}，扣完免赔额剩下的全赔了，
""",
    "det claim life neg": """
terms|说我投保前有病史没告知，要调查，可我根本没去过那家医院。
survey|调查员跑到单位去问东问西，搞得很尴尬。
speed|理赔拖了{mo}个月，说要调取{n_s}年前的就诊记录。
terms|自费药说不在范围里，合同上根本没写清楚。
docs|出院小结少盖了个章，又得跑一趟医院。
amount|扣完免赔额基本没剩多少，早知道不买了。
docs|要求寄原件，寄过去说少了一张，又得重新开。
survey|还让签一个授权书，说要查{who}所有的就诊记录。
terms|{who}这次是{ill}，硬说是“既往症”，直接拒赔。
amount|住院花了{amt}，最后只给赔了{cut}。
""",
    "det claim life mix": """
speed|最后赔下来了，但中间调查了快{mo}个月，
amount|赔是赔了，扣掉的部分解释得不太清楚，
""",
    # --- details: issuance
    "det issuance * pos": """
staff|{agent}讲条款讲得很细，哪些不保都提前说清楚了。
staff|没有一味推贵的，按我的预算推荐的方案。
app|在{app}上投保几分钟就搞定，电子保单马上就发过来了。
counter|柜台办得很快，前后不到{q_s}。
policy|保单和发票第二天就收到了，
staff|问了一堆问题，{agent}都很耐心地回答，没有催我签单。
terms|哪些情况不赔还专门划了重点，
counter|{teller}帮我把资料一项项核对好，一次就办完了。
visit|签完单第二天就有回访电话，核对得挺仔细。
""",
    "det issuance * neg": """
staff|{agent}买之前天天打电话，签完单就找不到人了。
terms|买的时候说“什么都保”，回家一看条款一堆免责。
speed|核保拖了{d_m}天，问了几次都说在审核。
policy|电子保单{d_s}天了还没收到，打电话催了才补发。
app|{app}投保页面卡了半天，付完款显示失败，钱却扣了。
counter|柜台排队{q_l}，只开了一个窗口。
visit|回访电话问得跟念经一样，我都没听清就让我说“是”。
staff|{agent}一直催着当天签，说明天就涨价，
terms|合同里的免责条款字特别小，{agent}一个字都没提。
""",
    "det issuance * mix": """
staff|{agent}专业度可以，就是推销的味道有点重，
terms|线上投保挺快，但条款太长根本看不完，
price|价格还算合理，就是流程繁琐了点。
speed|核保结果出得不算快，等了{d_m}天，也能理解。
""",
    "det issuance property pos": """
price|比4S店报的便宜了{up}块，保障一样。
policy|车险投保还送了免费洗车和年检代办，小福利挺实在。
price|报价透明，每一项保额都列得清清楚楚。
app|新车上牌当天就在{app}上出单了，
""",
    "det issuance property neg": """
price|硬要搭售驾乘意外险，不买就不给出单。
price|电话里报的价和出单时不一样，多了{up}块。
policy|纸质保单过了一周才寄到，中间想查点东西都查不到。
price|说好的洗车券、保养券，交完钱就不认了。
""",
    "det issuance life pos": """
terms|犹豫期、退保这些都主动讲了，不像有些人只挑好的说。
exam|体检安排得很顺利，还有人全程陪着。
policy|纸质保单送上门，{agent}还把重点用笔划出来了。
terms|健康告知一条条帮我过了一遍，该写的都如实写了，心里踏实。
exam|核保要补充材料，{agent}帮我把以前的病历整理好，{d_s}天就通过了。
""",
    "det issuance life neg": """
staff,terms|{agent}让我健康告知随便勾，说没事，后来才知道坑很大。
terms|年金险收益讲得天花乱坠，合同上的数字完全不一样。
exam|体检完加费{pct}%，事先一点都没提醒。
terms|犹豫期内想退，被拖着说要找领导签字。
staff|{agent}说是“存钱”，后来才知道是保险，退保还要亏钱。
""",
    "det issuance life mix": """
exam|体检流程还行，就是等报告等了{d_m}天，
""",
    # --- details: renewal
    "det renewal * pos": """
app|在{app}上点几下就办好了，
staff|{agent}每年都提前来问要不要调整保障，
counter|{teller}办得很利索，{q_s}就弄完了。
phone|打电话问了下，{cs}说得很清楚，
""",
    "det renewal * neg": """
counter|改个信息要本人带身份证去柜台，跑了{n_s}趟。
app|{app}上一直提示系统繁忙，只能打电话，
phone|客服电话打了{n}次都没打通，
staff|业务员换了人，新来的一问三不知。
remind|提醒短信一条都没收到，差点断保。
""",
    "det renewal * mix": """
price|价格比别家略贵一点，懒得换就续了。
remind|提醒是有的，就是短信太多分不清哪条是真的。
app|线上办挺方便，但发票要单独申请，
""",
    "det renewal property pos": """
price,hist|今年没出险，续保价格降了{up}块，无赔款优惠给到了。
remind|车险到期前一个月就收到提醒，还附了报价明细。
price|续保报价比好几家都实在，
policy|续保完电子保单直接发到手机，年检的时候很方便。
""",
    "det renewal property neg": """
price|续保涨了{up}块，没有任何提醒和解释。
price,hist|一年没出险，续保反而涨价，问了也说不清原因。
price,hist|去年出了一次小险，今年报价直接从{prem}涨到了{prem_new}。
remind|续保提醒根本没收到，车险过期了好几天才发现。
price|想去掉不需要的附加险，说必须一起续，不能单独减。
price|说好的折扣，出单的时候又按原价算了。
""",
    "det renewal property mix": """
price|续保涨了{up}块，解释得倒是挺清楚，
""",
    "det renewal life pos": """
pay|扣款前{d_s}天会发短信提醒，很贴心。
pay|换银行卡在{app}上就改好了，不用跑柜台。
remind|过了宽限期几天，{cs}主动打电话提醒我补交。
pay|每年{mon_n}自动扣款，从来没出过错。
policy|保单复效手续很简单，{d_s}天就恢复了。
""",
    "det renewal life neg": """
pay|自动扣款失败了也没人通知，保单差点失效。
policy|保单复效要重新做健康告知，还要补利息，流程很麻烦。
pay|续期保费{prem}，扣了两次，退款又等了{d_m}天。
counter|银行卡换了要去柜台改，排了{q_l}的队。
staff|原来的代理人离职了，保单成了“孤儿单”，续期没人管。
remind|宽限期快过了才收到一条短信，还是群发的。
""",
    "det renewal life mix": """
pay|扣款是正常扣了，就是提醒短信来得太晚，
""",
    # --- details: service channels (app, hotline, counter), any stage
    "det * * pos": """
counter|柜台工作人员很耐心，我问了好多遍都没嫌烦。
phone|电话一打就通，{cs}说话很客气。
app|{app}挺好用的，该有的功能都有。
counter|营业厅有座位有热水，等待时间也不长。
visit|办完还有回访电话，问得挺细。
staff|专业度没得说，解释得很清楚。
app|有问题在{app}上问在线客服，基本秒回。
counter|到{where}拿号，前面只有两三个人。
""",
    "det * * neg": """
phone|客服电话打了{n}次都没打通，
phone|转人工要按一堆键，最后还是排队，
app|{app}动不动就闪退，传个照片都费劲。
counter|{where}只开一个窗口，排了{q_l}，
staff|工作人员边办事边聊天，爱答不理的。
visit|回访电话一天打好几个，全是推销新产品的。
staff|投诉了也没用，就回个“已记录”。
staff|问什么都说“这个要问总公司”。
""",
    "det * * mix": """
phone|{cs}态度还行，就是解决不了实际问题，
staff|服务还可以，效率有待提高，
counter|网点有点偏，不过工作人员挺热情，
""",
    # --- overall evaluations
    "eval * * pos": """
整体非常满意，五星好评！
服务没话说，以后就认准他们家了。
效率高态度好，值得推荐。
这才是买保险该有的体验。
真的省心，给个大大的赞。
专业、靠谱，点赞。
没想到保险公司也能这么高效，好评。
体验很好，挑不出毛病。
比我之前打过交道的几家都强。
服务到位，钱花得值。
""",
    "eval claim * pos": """
都说理赔难，这次真没感觉到难。
关键时刻靠得住，这次算是验证了。
""",
    "eval issuance * pos": """
买得明白，心里踏实。
不忽悠，这点最难得。
""",
    "eval renewal * pos": """
这样的服务，续得放心。
老客户体验很好，会一直续下去。
""",
    "eval_good * * mix": """
总体满意，扣一星是因为等得有点久。
整体还不错，细节上再优化下就更好了。
除了排队有点久，其他都挺好。
挺好的，就是{app}偶尔有点卡。
服务不错，效率再高一点就完美了。
基本满意，有小瑕疵但不影响。
四星吧，留一颗星等下次表现。
""",
    "eval_mid * * mix": """
中规中矩吧。
一般般，没有特别好也没有特别差。
能办下来，但谈不上满意。
三星，不能再多了。
凑合吧，希望改进。
说不上好也说不上坏，就这样吧。
该有的都有，就是没什么亮点。
给三星，扣的分是效率。
不算坑，但也没什么惊喜。
""",
    "eval * * neg": """
体验极差。
太失望了，再也不会在他们家买了。
服务态度和效率都有问题，不推荐。
一星都不想给。
差评！
这种服务真是第一次见。
真心劝大家慎重。
花钱买罪受。
说好的客户至上呢？
""",
    "eval claim * neg": """
买的时候说得天花乱坠，理赔的时候就各种推。
交保费的时候挺积极，赔钱的时候就装死。
""",
    "eval renewal * neg": """
老客户就是这么对待的？
""",
    "eval renewal property neg": """
续保只想着涨价，服务一点没跟上。
""",
    "eval issuance * neg": """
卖保险的时候一个样，签完字又是另一个样。
""",
    # --- closings
    "close * * pos": """
已经推荐给同事了。
明年还续他们家。
希望一直保持！
会推荐给身边朋友的。
给工作人员加鸡腿。
辛苦了，谢谢！
""",
    "close claim * pos": """
感谢{adj}！
真心感谢{adj}的帮忙。
""",
    "close issuance * pos": """
谢谢{agent}的用心。
""",
    "close * * neg": """
已经向监管投诉了，看后续怎么处理。
明年到期就换家。
大家避雷。
希望有人管管。
准备打12378投诉。
再也不会买了。
看看有没有人出来回复吧。
""",
    "close * * mix": """
希望改进吧。
再观望一下。
后面看表现吧。
""",
    "close * * neu": """
以上是个人经历，仅供参考。
供大家参考。
希望对大家有帮助。
就说这么多吧。
""",
    # --- texts a moderator must mask (fictional phone numbers, reserved e-mail domains)
    "pii * * neu": """
想了解细节的可以打我电话{mobile}。
我的邮箱{email}，有问题可以交流。
需要材料清单的发邮件到{email}。
微信同号{mobile}，可以私聊。
""",
    "pii * * neg": """
有同样遭遇的可以加我交流，手机{mobile}。
""",
    "pii claim * pos": """
{adj}的电话是{mobile}，需要的可以找他。
""",
    "pii issuance * pos": """
{agent}的电话{mobile}，想买的可以直接找她。
""",
    "pii renewal * pos": """
{agent}的手机{mobile}，续保找她很省事。
""",
    # --- short reviews: subject + verdict (+ tail)
    "subj claim * neu": """
理赔
这次理赔
理赔流程
报案到赔款
理赔服务
赔款
""",
    "subj claim property neu": """
车险理赔
定损
这次出险理赔
""",
    "subj claim life neu": """
医疗险报销
住院报销
重疾理赔
""",
    "subj issuance * neu": """
投保
买保险的过程
出单
这次投保
办理投保
""",
    "subj issuance property neu": """
车险投保
新车投保
""",
    "subj issuance life neu": """
核保
买重疾险
签单
""",
    "subj renewal property neu": """
续保
今年续保
车险续保
续保流程
""",
    "subj renewal life neu": """
续期缴费
续期扣款
交续期保费
续费
""",
    "verd * * pos": """
很快，点赞
挺顺利的
比想象中方便
没毛病
效率很高
很省心
速度可以，好评
一次就搞定了
很专业
办得很利索
超出预期
态度好效率也高
，每一步都说得很清楚
，没什么好挑的
，整体很满意
全程线上，方便
""",
    "verd claim * pos": """
{d_s}天就到账了
，赔得很爽快
，钱很快就到了
""",
    "verd issuance * pos": """
，讲得很清楚，不忽悠
""",
    "verd renewal * pos": """
，提前就提醒了，很贴心
，价格还降了点
""",
    "verd * * neg": """
太慢了
，一言难尽
，体验很差
，全程被踢皮球
，各种推诿
拖拖拉拉的
，电话根本打不通
，态度真的差
，坑
，服了
，不会再来了
""",
    "verd claim * neg": """
材料要了{n_s}遍，服了
拖了{d_l}天，无语
，能拖就拖
""",
    "verd issuance * neg": """
，买之前和买之后两副面孔
，业务员只会画大饼
""",
    "verd renewal * neg": """
涨价也不提醒
，一年没出险还涨价
，扣款失败也没人通知
""",
    "verd * * mix": """
还行吧
一般般
，中规中矩
，凑合
慢了点，不过最后解决了
，能办，就是效率有待提高
，有好有坏
，不算差也谈不上好
""",
    "tail * * pos": """
，推荐
，五星
，下次还找他们
，给个好评
，赞
""",
    "tail * * neg": """
，差评
，不推荐
，大家避雷
，一星都多
""",
    "tail * * mix": """
，三星吧
，希望改进
""",
}


def _load_blocks() -> None:
    for key, block in _BLOCKS.items():
        slot, stage, kind, tag = key.split()
        for raw in block.strip().splitlines():
            line = raw.strip()
            if line:
                topic, _sep, template = line.rpartition("|")
                topics = frozenset(topic.split(",")) if topic else frozenset({template})
                _FRAGMENTS.append(_Frag(slot, stage, kind, tag, topics, template))


_load_blocks()

_POOLS: dict[tuple[str, str, str, str], list[_Frag]] = {}
for _frag in _FRAGMENTS:
    _POOLS.setdefault((_frag.slot, _frag.stage, _frag.kind, _frag.tag), []).append(_frag)


def _pool(slot: str, stage: str, kind: str, tag: str) -> list[_Frag]:
    """Fragments for a slot/tag: stage- and kind-specific ones plus the generic ones."""
    result: list[_Frag] = []
    for st in (stage, "*"):
        for kd in (kind, "*"):
            result.extend(_POOLS.get((slot, st, kd, tag), ()))
    return result


# ---------------------------------------------------------------------------
# Placeholder values
# ---------------------------------------------------------------------------

_CN_DIGITS = "零一二三四五六七八九"


def _cn(n: int, liang: bool = True) -> str:
    """Chinese numeral for 1..99 (两 for a leading 2 when *liang*)."""
    if n < 10:
        return "两" if (n == 2 and liang) else _CN_DIGITS[n]
    tens, ones = divmod(n, 10)
    head = "" if tens == 1 else _CN_DIGITS[tens]
    return f"{head}十{_CN_DIGITS[ones] if ones else ''}"


def _count(rng: random.Random, low: int, high: int) -> str:
    n = rng.randint(low, high)
    return str(n) if rng.random() < 0.45 else _cn(n)


def _money(rng: random.Random, value: int) -> str:
    style = rng.random()
    if value >= 10000 and style < 0.35:
        wan, rest = divmod(value, 10000)
        qian = rest // 1000
        return f"{_cn(wan)}万{_CN_DIGITS[qian] if qian else ''}" if wan < 10 else f"{wan}万"
    if value >= 10000 and style < 0.6:
        return f"{value / 10000:.1f}万".replace(".0万", "万")
    if 1000 <= value < 10000 and style < 0.3:
        return f"{_cn(value // 1000)}千多"
    return f"{value}{'块' if style < 0.75 else '元'}"


def _round_amount(value: int) -> int:
    step = 10 if value < 2000 else 50 if value < 10000 else 100
    return max(step, round(value / step) * step)


_SIMPLE_CHOICES: dict[str, tuple[str, ...]] = {
    "month": (
        "上个月",
        "前阵子",
        "今年三月",
        "去年年底",
        "年初",
        "上上个月",
        "国庆前",
        "春节前后",
        "五一前后",
        "前两个月",
        "夏天的时候",
        "上半年",
    ),
    "mon_n": ("三月", "五月", "七月", "九月", "十一月", "年底"),
    "car": (
        "我的车",
        "家里那台SUV",
        "老婆的小车",
        "我那台开了六年的轿车",
        "新买的电车",
        "我那辆二手车",
        "家里的七座车",
    ),
    "who": ("我爸", "我妈", "我老公", "我老婆", "孩子", "我自己", "家里老人"),
    "who2": ("我爸妈", "孩子", "我自己", "我老婆", "我老公", "全家"),
    "ill": (
        "阑尾炎",
        "肺炎",
        "胆结石",
        "骨折",
        "甲状腺结节",
        "急性肠胃炎",
        "肾结石",
        "腰椎间盘突出",
    ),
    "surg": ("阑尾炎", "胆囊", "甲状腺结节", "骨折复位", "疝气", "白内障"),
    "app": ("APP", "官方APP", "公众号", "小程序", "手机APP", "官网"),
    "cs": ("客服", "人工客服", "接电话的小姑娘", "客服小哥", "热线客服", "电话那头的客服"),
    "q_s": ("十分钟", "5分钟", "一刻钟", "七八分钟", "二十分钟"),
    "q_l": ("一个多小时", "快两个小时", "四十多分钟", "50分钟", "一个半小时", "整整一上午"),
    "hold": ("二十分钟", "半个多小时", "四十分钟", "快一个小时", "15分钟"),
    "amt_big": ("10万", "20万", "30万", "50万", "40万", "二十万", "三十万"),
}

_PRODUCTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("property", "issuance"): (
        "车险",
        "车险全险",
        "交强险和商业险",
        "家财险",
        "驾乘意外险",
        "新能源车险",
    ),
    ("property", "renewal"): ("车险", "商业车险", "家财险", "交强险"),
    ("property", "claim"): ("车险", "家财险"),
    ("life", "issuance"): (
        "重疾险",
        "百万医疗",
        "年金险",
        "少儿重疾",
        "定期寿险",
        "意外险",
        "教育金",
    ),
    ("life", "renewal"): ("重疾险", "年金险", "医疗险", "寿险", "教育金"),
    ("life", "claim"): ("医疗险", "重疾险", "意外险"),
}

_MAIL_USERS = ("user", "kehu", "demo", "test", "xiaoli", "zhang", "chezhu", "baodan")
_MAIL_DOMAINS = ("example.com", "example.cn", "example.org", "example.net")


class _Values(dict[str, str]):
    """Lazily generated, cached placeholder values for one review."""

    def __init__(
        self,
        rng: random.Random,
        stage: str,
        kind: str,
        city: str | None,
        people: dict[str, str],
    ) -> None:
        super().__init__()
        self._rng = rng
        self._stage = stage
        self._kind = kind
        self._city = city
        self._people = people  # role -> surname of a known staff member
        self._raw: dict[str, int] = {}

    def _person_surname(self, role: str) -> str:
        if role not in self._people:
            self._people[role] = _surname(_person_name(self._rng))
        return self._people[role]

    def _raw_amount(self) -> int:
        if "amt" not in self._raw:
            low, high = (600, 25000) if self._kind == "property" else (1500, 60000)
            self._raw["amt"] = _round_amount(
                int(math.exp(self._rng.uniform(*map(math.log, (low, high)))))
            )
        return self._raw["amt"]

    def _raw_premium(self) -> tuple[int, int]:
        if "prem" not in self._raw:
            low, high = (2200, 9000) if self._kind == "property" else (3000, 30000)
            old = _round_amount(self._rng.randint(low, high))
            new = _round_amount(int(old * self._rng.uniform(1.08, 1.45)))
            self._raw["prem"], self._raw["prem_new"] = old, new
        return self._raw["prem"], self._raw["prem_new"]

    def __missing__(self, key: str) -> str:
        rng = self._rng
        value: str
        if key in _SIMPLE_CHOICES:
            value = rng.choice(_SIMPLE_CHOICES[key])
        elif key == "prod":
            value = rng.choice(_PRODUCTS[(self._kind, self._stage)])
        elif key == "d_s":
            value = _count(rng, 1, 5)
        elif key == "d_m":
            value = _count(rng, 6, 15)
        elif key == "d_l":
            n = rng.randint(20, 75)
            value = str(n) if rng.random() < 0.6 else f"{_cn(n // 10)}十多"
        elif key == "mo":
            value = rng.choice(("两", "三", "四", "五", "3", "4"))
        elif key == "hrs":
            value = rng.choice(("两个小时", "三个多小时", "2个小时", "一个多小时", "快三个小时"))
        elif key == "n":
            value = rng.choice(("好几", "五", "六", "七八", "十几", "4", "6", "8"))
        elif key == "n_s":
            value = rng.choice(("两", "三", "2", "3", "四"))
        elif key == "yr":
            value = _count(rng, 2, 12)
        elif key == "pct":
            value = str(rng.choice((10, 15, 20, 25, 30, 40, 50)))
        elif key == "amt":
            value = _money(rng, self._raw_amount())
        elif key == "cut":
            value = _money(rng, _round_amount(int(self._raw_amount() * rng.uniform(0.1, 0.45))))
        elif key == "prem":
            value = str(self._raw_premium()[0])
        elif key == "prem_new":
            value = str(self._raw_premium()[1])
        elif key == "up":
            if "prem" in self._raw:
                old, new = self._raw_premium()
                value = str(new - old)
            else:
                value = str(rng.randint(2, 16) * 50)
        elif key == "where":
            if self._city and rng.random() < 0.7:
                value = rng.choice(
                    (f"{self._city}的营业厅", f"{self._city}市区的网点", f"{self._city}这边的柜台")
                )
            else:
                value = rng.choice(("家附近的网点", "他们营业厅", "市里的服务中心", "柜台"))
        elif key == "adj":
            s = self._person_surname("adjuster")
            if self._kind == "property":
                options = (
                    f"{s}师傅",
                    f"定损员小{s}",
                    f"查勘员{s}师傅",
                    "查勘员",
                    "定损员",
                    "对接的理赔员",
                )
            else:
                options = (
                    f"理赔专员小{s}",
                    f"{s}专员",
                    f"理赔的{s}姐",
                    "理赔专员",
                    "对接的专员",
                    "理赔员",
                )
            value = rng.choice(options)
        elif key == "agent":
            s = self._person_surname("agent")
            value = rng.choice(
                (f"{s}姐", f"代理人小{s}", f"{s}经理", f"业务员小{s}", "业务员", "客户经理")
            )
        elif key == "teller":
            s = self._person_surname("teller")
            value = rng.choice(
                (f"柜台的{s}姐", "柜员", "窗口的小姑娘", "柜台工作人员", f"柜员小{s}")
            )
        elif key == "mobile":
            digits = f"1380000{rng.randint(0, 9999):04d}"
            style = rng.random()
            if style < 0.2:
                value = f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
            elif style < 0.35:
                value = f"{digits[:3]} {digits[3:7]} {digits[7:]}"
            else:
                value = digits
        elif key == "email":
            user = f"{rng.choice(_MAIL_USERS)}{rng.randint(1, 999)}"
            value = f"{user}@{rng.choice(_MAIL_DOMAINS)}"
        else:
            raise KeyError(key)
        self[key] = value
        return value


_PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)\}")


def _render(template: str, values: _Values) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


# ---------------------------------------------------------------------------
# Review composition
# ---------------------------------------------------------------------------

_ROLE_KEY = {"adjuster": "adjuster", "agent": "agent", "teller": "teller"}


def _pick(rng: random.Random, pool: Sequence[_Frag], used_topics: set[str]) -> _Frag | None:
    fresh = [f for f in pool if not f.topics & used_topics]
    if not fresh:
        return None
    frag = rng.choice(fresh)
    used_topics.update(frag.topics)
    return frag


def _detail_plan(rng: random.Random, stars: int) -> list[str]:
    """Sentiment tags of the detail fragments for a long review with *stars*."""
    if stars == 5:
        return ["pos"] * rng.choice((1, 2, 2, 3))
    if stars == 4:
        plan = ["pos"] * rng.choice((1, 2, 2))
        if rng.random() < 0.45:
            plan.append("mix")
        return plan
    if stars == 3:
        roll = rng.random()
        if roll < 0.5:
            plan = ["pos", "neg"]
            rng.shuffle(plan)
            return plan
        if roll < 0.8:
            return ["mix"] * rng.choice((1, 2))
        return ["mix", "neg"]
    if stars == 2:
        plan = ["neg"] * rng.choice((1, 2, 2, 3))
        if rng.random() < 0.35:
            plan.insert(rng.randrange(len(plan) + 1), "mix")
        return plan
    return ["neg"] * rng.choice((2, 2, 3))


def review_parts(
    rng: random.Random,
    stage: str,
    stars: int,
    kind: str = "property",
    *,
    city: str | None = None,
    staff_member: DemoStaff | None = None,
) -> tuple[ReviewPart, ...]:
    """Compose one web review as tagged fragments.

    5 stars only uses ``pos``/``neu`` fragments, 1-2 stars only ``neg``/``mix``/``neu``;
    4 stars is praise with at most a minor ``mix`` remark, 3 stars mixes both sides.
    *city* (short name like "株洲") and *staff_member* make the text refer to them.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    if not 1 <= stars <= 5:
        raise ValueError(f"stars must be 1..5, got {stars}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    people: dict[str, str] = {}
    if staff_member is not None and staff_member.role in _ROLE_KEY:
        people[_ROLE_KEY[staff_member.role]] = _surname(staff_member.name)
    values = _Values(rng, stage, kind, city, people)
    tone = "pos" if stars >= 4 else "mix" if stars == 3 else "neg"
    frags: list[_Frag] = []
    used: set[str] = set()

    def take(slot: str, tag: str) -> None:
        frag = _pick(rng, _pool(slot, stage, kind, tag), used)
        if frag is not None:
            frags.append(frag)

    short = rng.random() < 0.13
    if short:
        take("subj", "neu")
        take("verd", tone)
        if rng.random() < 0.4:
            take("tail", tone)
    else:
        if rng.random() < 0.4:
            take("open", tone if rng.random() < 0.55 else "neu")
        if rng.random() < 0.8:
            take("ctx", "neu")
        for tag in _detail_plan(rng, stars):
            # generic service-channel fragments are in the pool; prefer stage ones
            take("det", tag)
        if stars == 4 and rng.random() < 0.5:
            take("eval_good", "mix")
        elif stars == 3:
            if rng.random() < 0.85:
                take("eval_mid", "mix")
        elif rng.random() < 0.85:
            take("eval", tone)
        if rng.random() < 0.4:
            take("close", tone if rng.random() < 0.6 else "neu")
    if rng.random() < 0.02:
        pii_tag = rng.choice(("neu", tone)) if tone != "mix" else "neu"
        pii = _pick(rng, _pool("pii", stage, kind, pii_tag), used)
        if pii is not None:
            frags.insert(len(frags) - (1 if len(frags) > 2 else 0), pii)

    parts = [ReviewPart(f.tag, _render(f.template, values)) for f in frags]
    if short:
        end = rng.choice(("", "", "。", "！", "!"))
        if end:
            parts.append(ReviewPart("neu", end))
    return tuple(parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def review_text(
    rng: random.Random,
    stage: str,
    stars: int,
    kind: str = "property",
    *,
    city: str | None = None,
    staff_member: DemoStaff | None = None,
) -> str:
    """A single realistic Chinese web review (see :func:`review_parts`)."""
    parts = review_parts(rng, stage, stars, kind, city=city, staff_member=staff_member)
    text = "".join(p.text for p in parts).strip()
    if text.endswith(("，", "：", "、")):
        text = text[:-1] + "。"
    if text.startswith("，"):
        text = text[1:]
    text = _CONTROL.sub("", text)
    return text[:MAX_TEXT_LEN]


# --- sentiment markers: recover pos/neg tags from finished texts -------------

_PUNCT = "，。！？、：；,.!? “”"


def _static_pieces(template: str) -> list[str]:
    return [p.strip(_PUNCT) for p in _PLACEHOLDER.split(template)[::2] if p.strip(_PUNCT)]


def _build_markers() -> dict[str, tuple[str, ...]]:
    statics: dict[str, list[str]] = {tag: [] for tag in TAGS}
    for frag in _FRAGMENTS:
        statics[frag.tag].append(_PLACEHOLDER.sub("\x00", frag.template))
    markers: dict[str, list[str]] = {"pos": [], "neg": []}
    for frag in _FRAGMENTS:
        if frag.tag not in markers:
            continue
        others = [s for tag, items in statics.items() if tag != frag.tag for s in items]
        for piece in sorted(_static_pieces(frag.template), key=len, reverse=True):
            if len(piece) >= 4 and not any(piece in other for other in others):
                markers[frag.tag].append(piece)
                break
    return {tag: tuple(sorted(set(items))) for tag, items in markers.items()}


_MARKERS = _build_markers()


def sentiments_in(text: str) -> frozenset[str]:
    """Which of ``pos`` (praise-only) and ``neg`` (complaint-only) fragments occur in *text*.

    Each pos/neg fragment has a marker: its longest literal piece that does not occur in
    any fragment of another sentiment.  Useful to check that star ratings and texts agree.
    """
    return frozenset(tag for tag, markers in _MARKERS.items() if any(m in text for m in markers))


# ---------------------------------------------------------------------------
# Ratings
# ---------------------------------------------------------------------------

_STAGE_OFFSET = {"issuance": 0.2, "renewal": 0.0, "claim": -0.45}
_CHANNEL_OFFSET = {"counter": 0.9, "phone": 0.1, "web": -0.3}
_MID_SHARE = {"counter": 0.08, "phone": 0.15, "web": 0.12}
_CHANNEL_WEIGHTS = (("counter", 0.40), ("phone", 0.35), ("web", 0.25))
_STAGE_WEIGHTS = {
    "counter": (("issuance", 0.35), ("renewal", 0.40), ("claim", 0.25)),
    "phone": (("issuance", 0.35), ("renewal", 0.25), ("claim", 0.40)),
    "web": (("issuance", 0.25), ("renewal", 0.25), ("claim", 0.50)),
}
# probability that a web rating with these stars carries a written review
_WEB_TEXT_SHARE = {1: 0.85, 2: 0.82, 3: 0.72, 4: 0.62, 5: 0.64}

# Half-hour slots from 08:30 as (slot count, weight) runs.  Counters close at 17:30,
# phone and web run until 21:00; both peak mid-morning and mid-afternoon.
_SLOTS_OTHER = ((1, 0.5), (1, 1.0), (1, 1.3), (4, 1.5), (4, 0.9), (6, 1.4), (4, 1.0), (4, 0.6))
_SLOTS_COUNTER = ((1, 0.6), (1, 1.4), (5, 1.55), (4, 0.65), (5, 1.4), (1, 1.1), (1, 0.7))
_DAY_START = time(8, 30)


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _months_before(moment: datetime, months: int) -> datetime:
    years, month_index = divmod(moment.month - 1 - months, 12)
    year, month = moment.year + years, month_index + 1
    day = min(moment.day, monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


class _Clock:
    """Draws timestamps in [start, end] with recency, weekday and time-of-day weights."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.first_day = start.date()
        n_days = (end.date() - self.first_day).days + 1
        self.cum: dict[bool, list[float]] = {}
        self.slots: dict[bool, list[float]] = {}
        for counter in (True, False):
            weights = []
            for i in range(n_days):
                weekday = (self.first_day + timedelta(days=i)).weekday()
                recency = 0.8 + 0.5 * i / max(1, n_days - 1)
                if counter:
                    factor = (1.0, 1.0, 1.0, 1.0, 1.05, 0.45, 0.25)[weekday]
                else:
                    factor = (1.0, 1.0, 1.0, 1.0, 0.95, 0.8, 0.8)[weekday]
                weights.append(recency * factor)
            self.cum[counter] = list(accumulate(weights))
            runs = _SLOTS_COUNTER if counter else _SLOTS_OTHER
            self.slots[counter] = list(accumulate(w for count, w in runs for _ in range(count)))

    def draw(self, rng: random.Random, counter: bool) -> datetime:
        cum = self.cum[counter]
        slot_cum = self.slots[counter]
        for _ in range(1000):
            day_index = bisect_right(cum, rng.random() * cum[-1])
            slot = bisect_right(slot_cum, rng.random() * slot_cum[-1])
            day: date = self.first_day + timedelta(days=day_index)
            moment = datetime.combine(day, _DAY_START, tzinfo=CST) + timedelta(
                minutes=30 * slot, seconds=rng.randrange(1800)
            )
            if self.start <= moment <= self.end:
                return moment
        return self.end.replace(microsecond=0)


def _draw_level(rng: random.Random, mu: float, mid_share: float) -> int:
    """Satisfaction on a 1..5 scale, J-shaped like real ratings, centred by *mu*."""
    if rng.random() < mid_share:
        return 3
    p_happy = 1.0 / (1.0 + math.exp(-1.7 * (mu - 3.0)))
    if rng.random() < p_happy:
        return 5 if rng.random() < 0.68 else 4
    return 1 if rng.random() < 0.55 else 2


def _to_scale(level: int, scale: int) -> int:
    if scale == 5:
        return level
    return 1 if level >= 4 else 2 if level == 3 else 3


def ratings(
    rng: random.Random,
    n: int,
    end: datetime,
    months: int = 18,
    staff_list: list[DemoStaff] | None = None,
) -> Iterator[DemoRating]:
    """Yield exactly *n* ratings in chronological order within the *months* before *end*.

    Pass the list returned by :func:`staff` as *staff_list* so staff numbers match the
    staff you stored; without it a staff list is drawn from *rng* first.  A naive *end*
    is taken as China Standard Time.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if months < 1:
        raise ValueError("months must be >= 1")
    end = end.replace(tzinfo=CST) if end.tzinfo is None else end.astimezone(CST)
    members = staff(rng) if staff_list is None else list(staff_list)
    ins_list = insurers()
    branch_by_code = {b.code: b for b in branches()}
    by_role: dict[tuple[str, str], list[DemoStaff]] = {}
    by_branch_role: dict[tuple[str, str], list[DemoStaff]] = {}
    for member in members:
        branch = branch_by_code.get(member.branch_code)
        if branch is None or branch.insurer_code != member.insurer_code:
            raise ValueError(f"staff {member.staff_no} has an unknown branch {member.branch_code}")
        if member.role not in ROLES:
            raise ValueError(f"staff {member.staff_no} has an unknown role {member.role}")
        by_role.setdefault((member.insurer_code, member.role), []).append(member)
        by_branch_role.setdefault((member.branch_code, member.role), []).append(member)
    for ins in ins_list:
        for role in ("teller", "call_agent"):
            if not by_role.get((ins.code, role)):
                raise ValueError(f"insurer {ins.code} needs at least one {role}")
    return _rating_stream(
        rng, n, end, months, ins_list, branch_by_code, members, by_role, by_branch_role
    )


def _rating_stream(
    rng: random.Random,
    n: int,
    end: datetime,
    months: int,
    ins_list: list[DemoInsurer],
    branch_by_code: dict[str, DemoBranch],
    members: list[DemoStaff],
    by_role: dict[tuple[str, str], list[DemoStaff]],
    by_branch_role: dict[tuple[str, str], list[DemoStaff]],
) -> Iterator[DemoRating]:
    clock = _Clock(_months_before(end, months), end)
    staff_effect = {(m.insurer_code, m.staff_no): rng.gauss(0.0, 0.3) for m in members}
    branch_effect = {code: rng.gauss(0.0, 0.15) for code in branch_by_code}
    branches_of: dict[str, list[DemoBranch]] = {}
    for branch in branch_by_code.values():
        branches_of.setdefault(branch.insurer_code, []).append(branch)
    ins_weights = [_VOLUME_BY_CODE.get(i.code, 1.0) for i in ins_list]

    # Plan (time, insurer index, channel, stage).  The first few plans cover every
    # insurer and every channel x stage pair so small samples are still complete.
    plans: list[tuple[datetime, int, int, str, str]] = []
    forced = min(n, max(len(ins_list), len(CHANNELS) * len(STAGES)))
    for seq in range(n):
        if seq < forced:
            ins_index = seq % len(ins_list)
            channel = CHANNELS[seq % len(CHANNELS)]
            stage = STAGES[(seq // len(CHANNELS)) % len(STAGES)]
        else:
            ins_index = rng.choices(range(len(ins_list)), weights=ins_weights)[0]
            channel = _weighted(rng, _CHANNEL_WEIGHTS)
            stage = _weighted(rng, _STAGE_WEIGHTS[channel])
        plans.append((clock.draw(rng, channel == "counter"), seq, ins_index, channel, stage))
    plans.sort()

    for occurred_at, _seq, ins_index, channel, stage in plans:
        ins = ins_list[ins_index]
        kind = _KIND_BY_CODE.get(ins.code, "property")
        member: DemoStaff | None = None
        branch: DemoBranch | None = None
        text: str | None = None
        verified = True
        if channel == "counter":
            member = rng.choice(by_role[(ins.code, "teller")])
            scale = 3
        elif channel == "phone":
            role = "call_agent"
            if stage == "issuance" and rng.random() < 0.55:
                role = "agent"
            elif stage == "claim" and rng.random() < 0.5:
                role = "adjuster"
            candidates = by_role.get((ins.code, role)) or by_role[(ins.code, "call_agent")]
            member = rng.choice(candidates)
            scale = 5 if rng.random() < 0.7 else 3
        else:
            scale = 5
            if rng.random() < 0.6:
                branch = rng.choice(branches_of[ins.code])
                if rng.random() < 0.5:
                    roles = {"issuance": "agent", "renewal": "teller", "claim": "adjuster"}
                    candidates = by_branch_role.get((branch.code, roles[stage]), [])
                    member = rng.choice(candidates) if candidates else None
            verified = rng.random() < 0.85
        if member is not None:
            branch = branch_by_code[member.branch_code]
        mu = 1.85 + 2.6 * ins.quality + _STAGE_OFFSET[stage] + _CHANNEL_OFFSET[channel]
        if branch is not None:
            mu += branch_effect.get(branch.code, 0.0)
        if member is not None:
            mu += staff_effect.get((member.insurer_code, member.staff_no), 0.0)
        level = _draw_level(rng, mu, _MID_SHARE[channel])
        if channel == "web" and rng.random() < _WEB_TEXT_SHARE[level]:
            city = _branch_city(branch) if branch is not None else None
            text = review_text(rng, stage, level, kind, city=city, staff_member=member)
        yield DemoRating(
            insurer_code=ins.code,
            branch_code=branch.code if branch is not None else None,
            staff_no=member.staff_no if member is not None else None,
            stage=stage,
            channel=channel,
            scale=scale,
            value=_to_scale(level, scale),
            occurred_at=occurred_at,
            text=text,
            verified=verified,
        )
