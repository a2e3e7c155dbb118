"""GB/T 2260 administrative division codes: validation and province names."""

from __future__ import annotations

import re

from portal.errors import Invalid

PROVINCES = {
    "11": "北京市",
    "12": "天津市",
    "13": "河北省",
    "14": "山西省",
    "15": "内蒙古自治区",
    "21": "辽宁省",
    "22": "吉林省",
    "23": "黑龙江省",
    "31": "上海市",
    "32": "江苏省",
    "33": "浙江省",
    "34": "安徽省",
    "35": "福建省",
    "36": "江西省",
    "37": "山东省",
    "41": "河南省",
    "42": "湖北省",
    "43": "湖南省",
    "44": "广东省",
    "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市",
    "51": "四川省",
    "52": "贵州省",
    "53": "云南省",
    "54": "西藏自治区",
    "61": "陕西省",
    "62": "甘肃省",
    "63": "青海省",
    "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
    "71": "台湾省",
    "81": "香港特别行政区",
    "82": "澳门特别行政区",
}
_CODE = re.compile(r"^\d{6}$")


def check_region(code: str) -> str:
    """A 6-digit code whose first two digits name a province; raises Invalid otherwise."""
    code = code.strip()
    if not _CODE.match(code) or code[:2] not in PROVINCES:
        raise Invalid(
            "“%(value)s” is not a GB/T 2260 region code (6 digits, e.g. 430200).",
            field="region",
            code="invalid_region",
            value=code[:20],
        )
    return code


def province_of(code: str) -> str:
    return code[:2] + "0000"


def city_of(code: str) -> str:
    """The prefecture-level city (地级市) a code belongs to: 430211 -> 430200."""
    return code[:4] + "00"


def province_name(code: str) -> str:
    return PROVINCES.get(code[:2], code)
