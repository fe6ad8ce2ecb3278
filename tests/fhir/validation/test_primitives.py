"""Primitive formats, as json.html and datatypes.html define them."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygeia.fhir.validation.primitives import (
    KnownGood,
    check_primitive,
    is_real_day,
    is_xhtml_div,
    primitive_checkers,
)


def ok(type_name: str, value: Any) -> bool:
    return check_primitive(type_name, value) is None


@pytest.mark.parametrize(
    "value",
    ["2024", "2024-02", "2024-02-29", "2000-02-29", "0001-01-01", "1970-12-31"],
)
def test_valid_dates(value: str) -> None:
    assert ok("date", value)


@pytest.mark.parametrize(
    "value",
    [
        "24",
        "2024-2",
        "2024-13",
        "2024-00",
        "2024-02-30",
        "2023-02-29",
        "1900-02-29",
        "2024-04-31",
        "2024-01-01T00:00:00Z",
        "2024-01-01 ",
        " 2024",
        "0000",
        "2024/01/01",
        "",
    ],
)
def test_invalid_dates(value: str) -> None:
    assert not ok("date", value)


@pytest.mark.parametrize(
    "value",
    [
        "2015",
        "2015-02",
        "2015-02-07",
        "2015-02-07T13:28:17-05:00",
        "2015-02-07T13:28:17Z",
        "2017-01-01T00:00:00.000Z",
        "2017-01-01T00:00:00.123456789+14:00",
        "2016-12-31T23:59:60Z",
        "2020-02-29T10:00:00+13:59",
    ],
)
def test_valid_date_times(value: str) -> None:
    assert ok("dateTime", value)


@pytest.mark.parametrize(
    "value",
    [
        "2015-02-07T13:28:17",
        "2015-02-07T13:28Z",
        "2015-02-07T13Z",
        "2015-02-07T24:00:00Z",
        "2015-02-07T13:28:17+14:01",
        "2015-02-07T13:28:17+15:00",
        "2015-02-07T13:28:17.Z",
        "2015-02-07t13:28:17Z",
        "2015-02-30T10:00:00Z",
        "2015-02-07T",
        "2015-02-07T13:28:17z",
    ],
)
def test_invalid_date_times(value: str) -> None:
    assert not ok("dateTime", value)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2015-02-07T13:28:17.239+02:00", True),
        ("2017-01-01T00:00:00Z", True),
        ("2015-02-07", False),
        ("2015-02-07T13:28:17", False),
        ("2015", False),
        ("2021-02-29T00:00:00Z", False),
    ],
)
def test_instants_need_full_precision_and_a_zone(value: str, valid: bool) -> None:
    assert ok("instant", value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("00:00:00", True),
        ("23:59:60", True),
        ("12:30:00.5", True),
        ("24:00:00", False),
        ("9:00:00", False),
        ("09:00", False),
        ("09:00:00Z", False),
    ],
)
def test_times(value: str, valid: bool) -> None:
    assert ok("time", value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2024-02-29", True),
        ("2023-02-29", False),
        ("2000-02-29", True),
        ("2100-02-29", False),
        ("2023-04-30", True),
        ("2023-04-31", False),
        ("2023-12-31T23:00:00Z", True),
        ("2023", True),
    ],
)
def test_is_real_day(value: str, valid: bool) -> None:
    assert is_real_day(value) is valid


@pytest.mark.parametrize(
    ("type_name", "value", "valid"),
    [
        ("integer", 0, True),
        ("integer", -(2**31), True),
        ("integer", 2**31 - 1, True),
        ("integer", 2**31, False),
        ("integer", -(2**31) - 1, False),
        ("integer", True, False),
        ("integer", 1.0, False),
        ("integer", "1", False),
        ("positiveInt", 1, True),
        ("positiveInt", 0, False),
        ("positiveInt", False, False),
        ("unsignedInt", 0, True),
        ("unsignedInt", -1, False),
        ("unsignedInt", 2**31, False),
        ("decimal", 1, True),
        ("decimal", -0.5, True),
        ("decimal", 1e300, True),
        ("decimal", Decimal("1.50"), True),
        ("decimal", float("nan"), False),
        ("decimal", float("inf"), False),
        ("decimal", True, False),
        ("decimal", "1.5", False),
        ("boolean", True, True),
        ("boolean", False, True),
        ("boolean", 1, False),
        ("boolean", "true", False),
        ("boolean", None, False),
    ],
)
def test_numbers_and_booleans(type_name: str, value: Any, valid: bool) -> None:
    assert ok(type_name, value) is valid


@pytest.mark.parametrize(
    ("type_name", "value", "valid"),
    [
        ("string", "hello\tworld\r\n", True),
        ("string", " ", True),
        ("string", "", False),
        ("string", "caf\u00e9 \u00a0", True),
        ("string", "form\x0cfeed", False),
        ("string", 5, False),
        ("string", "x" * (1024 * 1024 + 1), False),
        ("markdown", "**bold**", True),
        ("code", "final", True),
        ("code", "en US", True),
        ("code", "en  US", False),
        ("code", " en", False),
        ("code", "en\n", False),
        ("id", "a-Z.09", True),
        ("id", "x" * 64, True),
        ("id", "x" * 65, False),
        ("id", "under_score", False),
        ("uri", "urn:x", True),
        ("uri", "http://a b", False),
        ("url", "http://example.org/a?b=c", True),
        ("canonical", "http://hl7.org/fhir/ValueSet/x|4.0.1", True),
        ("oid", "urn:oid:1.2.3", True),
        ("oid", "urn:oid:1.02", False),
        ("oid", "1.2.3", False),
        ("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", True),
        ("uuid", "urn:uuid:C757873D-EC9A-4326-A141-556F43239520", False),
        ("uuid", "c757873d-ec9a-4326-a141-556f43239520", False),
        ("base64Binary", "SGVsbG8=", True),
        ("base64Binary", "SGVs\nbG8=", True),
        ("base64Binary", "SGVsbG8", False),
        ("base64Binary", "SG Vs", False),
        ("xhtml", '<div xmlns="http://www.w3.org/1999/xhtml">x</div>', True),
        ("xhtml", "<div/>", True),
        ("xhtml", "<p>x</p>", False),
        ("xhtml", "<divx>", False),
    ],
)
def test_strings(type_name: str, value: Any, valid: bool) -> None:
    assert ok(type_name, value) is valid


def test_base64_regex_does_not_backtrack_exponentially() -> None:
    evil = "AAAA " * 40 + "A"
    start = time.perf_counter()
    assert not ok("base64Binary", evil)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("html", ["<div>a</div>", ' <div class="x">a</div>\n', "<div/>"])
def test_xhtml_div_shape(html: str) -> None:
    assert is_xhtml_div(html)


def test_problems_say_what_and_why() -> None:
    assert check_primitive("date", "2024-02-30") == (
        "value",
        "'2024-02-30' is not a valid date: there is no such day",
    )
    code, message = check_primitive("integer", True) or ("", "")
    assert code == "structure"
    assert "boolean" in message


def test_long_bad_values_are_shortened_in_messages() -> None:
    code, message = check_primitive("id", "x" * 5000) or ("", "")
    assert code == "value"
    assert len(message) < 200


def test_known_good_matches_the_checker_exactly() -> None:
    memo = KnownGood(primitive_checkers()["date"])
    assert memo.learn("2024-02-29")
    assert "2024-02-29" in memo
    assert not memo.learn("2023-02-29")
    assert "2023-02-29" not in memo


def test_known_good_is_bounded() -> None:
    memo = KnownGood(primitive_checkers()["string"])
    for number in range(KnownGood.LIMIT + 10):
        memo.learn(str(number))
    assert len(memo) <= KnownGood.LIMIT
    assert memo.learn("x" * 1000)
    assert "x" * 1000 not in memo


@given(st.text(max_size=40))
def test_string_kinds_never_crash(text: str) -> None:
    for name, checker in primitive_checkers().items():
        problem = checker(text)
        assert problem is None or problem[0] in {"value", "structure"}, name


@pytest.mark.parametrize("type_name", ["string", "markdown", "code", "uri", "id", "xhtml",
                                       "base64Binary", "canonical"])
@pytest.mark.parametrize("character", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b",
                                       "\x1f"])
def test_control_characters_are_refused_in_every_string_type(type_name: str,
                                                             character: str) -> None:
    value = f"<div>a{character}b</div>" if type_name == "xhtml" else f"ab{character}cd"
    problem = check_primitive(type_name, value)
    assert problem is not None and problem[0] == "value"


@pytest.mark.parametrize("type_name", ["string", "markdown"])
def test_tab_carriage_return_and_line_feed_are_allowed(type_name: str) -> None:
    assert check_primitive(type_name, "a\tb\r\nc ") is None
    problem = check_primitive(type_name, "a\x00b")
    assert problem is not None and "U+0000 at position 2" in problem[1]


def test_base64_shortcut_gives_the_regex_verdict() -> None:
    """Plain base64 is accepted without the regex; every verdict stays the regex's."""
    import base64
    import random
    import re

    regex = re.compile(r"\s*(?:[0-9a-zA-Z+/=]{4}\s*)+", re.ASCII).fullmatch
    check = primitive_checkers()["base64Binary"]
    rng = random.Random(7)
    values = [base64.b64encode(rng.randbytes(size)).decode() for size in range(0, 40)]
    values += ["QQ==", "QUI=", "QUJD", "QQ=A", "Q===", "====", "QQ", "QQ=", "Q", "QUJD\n",
               " QUJD", "QU JD", "QUJD\tQUJD", "QUJD\x00", "QUJDé===", "QU-_", "QUJD=", "=QUJ"]
    alphabet = "AQZaz09+/= \n\t-_\x00é"
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
               for _ in range(3000)]
    for value in values:
        expected = bool(value) and regex(value) is not None and "\x00" not in value
        assert (check(value) is None) == expected, repr(value)
