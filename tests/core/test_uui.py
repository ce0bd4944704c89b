"""The User-to-User decoding rules (handbook uui.md) and the encoder for the onward transfer."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.uui import (
    ACS_UUI_CHARSET,
    ACS_UUI_MAX,
    ENCODE_FORMATS,
    ERROR_KINDS,
    DecodedUUI,
    UUIEncodeError,
    UUIError,
    decode,
    encode,
    fits_acs,
    report,
)
from tests.conftest import DATA, load_json

VECTORS: list[dict[str, Any]] = load_json(DATA / "uui-public.json")
REPORT_KEYS = {"ok", "encoding", "params", "pd", "text", "pairs", "positional", "items", "warnings", "error"}
COMPARED = ("ok", "encoding", "params", "pd", "text", "pairs", "positional")
RESERVED = ("encoding", "purpose", "content", "pd")
#: The three product forms; Avaya shared UUI has its own tests (test_uui_avaya_shared.py).
TEXT_FORMATS = tuple(format for format in ENCODE_FORMATS if format != "avaya-shared")
BIG = 100_000  # a size limit that never gets in the way of a property

PROPERTY = settings(max_examples=200, deadline=None)
ROUND_TRIP = settings(max_examples=100, deadline=None)  # per format: 300 examples per property


def hexed(text: str) -> str:
    return text.encode("utf-8").hex().upper()


def error_of(value: str, **options: Any) -> UUIError:
    with pytest.raises(UUIError) as caught:
        decode(value, **options)
    return caught.value


# --- The public vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["id"] for vector in VECTORS])
def test_every_public_vector_decodes_as_the_handbook_expects(vector: dict[str, Any]) -> None:
    expected = vector["expected"]
    result = report(vector["header_value"])

    assert set(result) == REPORT_KEYS
    assert {name: result[name] for name in COMPARED} == {name: expected[name] for name in COMPARED}
    error = result["error"]
    assert (error["kind"] if isinstance(error, dict) else None) == expected["error_kind"]

    if expected["ok"]:
        decoded = decode(vector["header_value"])
        assert decoded.encoding == expected["encoding"]
        assert decoded.params == expected["params"]
        assert decoded.pd == expected["pd"]
        assert decoded.text == expected["text"]
        assert decoded.pairs == expected["pairs"]
        positional = expected["positional"]
        assert decoded.positional == (None if positional is None else tuple(positional))
    else:
        failure = error_of(vector["header_value"])
        assert failure.kind == expected["error_kind"]
        assert (failure.encoding, failure.params, failure.pd, failure.text) == (
            expected["encoding"],
            expected["params"],
            expected["pd"],
            expected["text"],
        )


def test_the_vectors_cover_the_three_product_forms_and_only_known_error_kinds() -> None:
    ids = {vector["id"] for vector in VECTORS}
    assert {"seed-plain", "seed-hex-encoding", "seed-hex-pd4"} <= ids
    kinds = {vector["expected"]["error_kind"] for vector in VECTORS} - {None}
    assert kinds <= ERROR_KINDS


# --- Rule 1: trim, empty, size limit --------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "\t", " \r\n"])
def test_a_blank_value_is_empty(value: str) -> None:
    assert error_of(value).kind == "empty"


def test_a_value_of_exactly_256_characters_is_accepted_and_257_is_oversized() -> None:
    value = "k=" + "v" * 254
    assert decode(value).pairs == {"k": "v" * 254}
    assert error_of(value + "v").kind == "oversized"


def test_surrounding_whitespace_does_not_count_towards_the_size_limit() -> None:
    assert decode("  " + "k=" + "v" * 254 + "  ").pairs == {"k": "v" * 254}


def test_the_size_limit_is_configurable() -> None:
    value = "k=" + "v" * 298
    assert decode(value, max_length=300).pairs == {"k": "v" * 298}
    failure = error_of("sipkey1=sipval1", max_length=10)
    assert failure.kind == "oversized"
    assert "15 characters" in failure.message and "limit is 10" in failure.message


# --- Rules 2-4: segments, quotes and header parameters --------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "6B3D31;encoding=hex",
        "6B3D31;ENCODING=HEX",
        "6B3D31 ; Encoding = hex ",
        '6B3D31;encoding="hex"',
        '6B3D31;"encoding"=" hex "',
        "6B3D31;purpose=isdn-uui;encoding=hex;content=isdn-uui",
        "6B3D31;\tencoding\t=\thex",
    ],
)
def test_parameters_are_read_in_any_case_order_and_whitespace_with_quotes_trimmed(value: str) -> None:
    decoded = decode(value)
    assert decoded.encoding == "hex"
    assert decoded.pairs == {"k": "1"}
    assert decoded.params["encoding"].lower() == "hex"


def test_parameter_names_are_lower_case_and_values_kept_as_received() -> None:
    decoded = decode('6B3D31;PD="04";Purpose=ISDN-UUI')
    assert decoded.params == {"pd": "04", "purpose": "ISDN-UUI"}
    assert decoded.pd == 4


def test_a_quoted_data_segment_keeps_its_semicolons() -> None:
    decoded = decode('"a=1;b=2";encoding=ascii')
    assert decoded.encoding == "plain"
    assert decoded.params == {"encoding": "ascii"}
    assert decoded.pairs == {"a": "1", "b": "2"}


def test_an_unbalanced_quote_is_an_unterminated_quote_and_says_where() -> None:
    failure = error_of('a=1;encoding="hex')
    assert failure.kind == "unterminated_quote"
    assert "character 14" in failure.message


def test_the_same_parameter_with_different_values_is_conflicting() -> None:
    failure = error_of("6B3D31;encoding=hex;encoding=ascii")
    assert failure.kind == "conflicting_params"
    assert "encoding" in failure.message
    assert failure.params == {"encoding": "hex"}


def test_a_pd_of_4_and_04_twice_is_not_conflicting() -> None:
    decoded = decode("6B3D31;pd=4;pd=04")
    assert decoded.pd == 4
    assert decoded.params == {"pd": "4"}
    assert decoded.warnings == ("parameter pd is repeated with the same value",)


def test_the_same_parameter_repeated_in_another_case_is_accepted_with_a_warning() -> None:
    decoded = decode("6B3D31;encoding=hex;Encoding=HEX")
    assert decoded.pairs == {"k": "1"}
    assert decoded.warnings == ("parameter encoding is repeated with the same value",)


@pytest.mark.parametrize(
    "value",
    ["6B3D31;encoding=hex, 6B3D32;encoding=hex", "6B3D31;pd=4,5", "a=1;purpose=x,y"],
)
def test_a_comma_in_a_parameter_means_several_uui_values(value: str) -> None:
    failure = error_of(value)
    assert failure.kind == "multiple_values"
    assert failure.encoding is None


@pytest.mark.parametrize("name", ["base64", "quoted-printable", "", "hex2", "utf-16"])
def test_an_encoding_outside_the_known_names_is_unsupported(name: str) -> None:
    failure = error_of(f"6B3D31;encoding={name}")
    assert failure.kind == "unsupported_encoding"
    assert failure.encoding is None
    assert failure.params == {"encoding": name}


@pytest.mark.parametrize("name", ["ascii", "text", "plain", "utf-8", "utf8", "UTF-8", "Ascii"])
def test_the_text_encoding_names_mean_plain(name: str) -> None:
    decoded = decode(f"k=1;encoding={name}")
    assert decoded.encoding == "plain"
    assert decoded.pairs == {"k": "1"}


@pytest.mark.parametrize("pd", ["x4", "256", "-1", "+4", "4.0", "0x04", "", "٤", "1000"])
def test_a_pd_that_is_not_a_decimal_0_to_255_is_invalid(pd: str) -> None:
    failure = error_of(f"3132;pd={pd}")
    assert failure.kind == "invalid_pd"
    assert failure.encoding == "hex"
    assert failure.pd is None


@pytest.mark.parametrize(("pd", "number"), [("0", 0), ("4", 4), ("04", 4), ("0004", 4), ("255", 255)])
def test_a_pd_is_read_as_a_decimal_number(pd: str, number: int) -> None:
    assert decode(f"3132;pd={pd}").pd == number


def test_a_reserved_name_after_the_first_item_is_a_header_parameter_not_a_key() -> None:
    decoded = decode("acct=1;content=billing")
    assert decoded.params == {"content": "billing"}
    assert decoded.pairs == {"acct": "1"}
    # The first segment is always data, so there the name stays a key.
    assert decode("purpose=billing;acct=1").pairs == {"purpose": "billing", "acct": "1"}


def test_a_reserved_name_without_equals_is_data() -> None:
    assert decode("en;pd;4").positional == ("en", "pd", "4")


# --- Rule 5: hex or plain, from the parameters only -------------------------------------------------


@pytest.mark.parametrize("value", ["6B3D31", "7369706B6579313D73697076616C31", "0x6B3D31", "3132"])
def test_data_that_looks_like_hex_is_never_guessed_to_be_hex(value: str) -> None:
    decoded = decode(value)
    assert decoded.encoding == "plain"
    assert decoded.positional == (value,)


def test_a_pd_parameter_without_encoding_means_hex() -> None:
    decoded = decode("6B3D31;pd=4")
    assert (decoded.encoding, decoded.pairs) == ("hex", {"k": "1"})


def test_an_explicit_text_encoding_beats_a_pd_parameter() -> None:
    decoded = decode("k=1;encoding=ascii;pd=4")
    assert (decoded.encoding, decoded.pd, decoded.pairs) == ("plain", 4, {"k": "1"})


def test_isdn_uui_without_encoding_is_hex_only_when_the_data_is_even_length_hex() -> None:
    hex_form = decode("6B3D31;purpose=isdn-uui")
    assert hex_form.encoding == "hex"
    assert hex_form.pairs == {"k": "1"}
    assert any("isdn-uui" in warning for warning in hex_form.warnings)
    assert decode("6B3D3;content=isdn-uui").encoding == "plain"
    assert decode("k=1;content=ISDN-UUI").pairs == {"k": "1"}


def test_the_workstream_default_encoding_hex_reads_bare_data_as_hex() -> None:
    decoded = decode("6B3D31", default_encoding="hex")
    assert (decoded.encoding, decoded.pairs) == ("hex", {"k": "1"})
    assert report("6B3D31", default_encoding="hex")["pairs"] == {"k": "1"}


def test_an_explicit_text_encoding_beats_the_workstream_default_hex() -> None:
    assert decode("k=1;encoding=plain", default_encoding="hex").pairs == {"k": "1"}


def test_plain_data_under_the_workstream_default_hex_is_not_hex() -> None:
    failure = error_of("sipkey1=sipval1", default_encoding="hex")
    assert (failure.kind, failure.encoding) == ("non_hex_characters", "hex")


def test_an_unknown_default_encoding_is_a_configuration_error_not_a_uui_error() -> None:
    with pytest.raises(ValueError, match="default_encoding") as caught:
        decode("k=1", default_encoding="base64")
    assert not isinstance(caught.value, UUIError)


# --- Rule 6: hex data ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["0x", "0X"])
def test_a_0x_prefix_on_hex_data_is_accepted(prefix: str) -> None:
    assert decode(f"{prefix}6B3D31;encoding=hex").pairs == {"k": "1"}


@pytest.mark.parametrize("data", ["6B 3D31", "6B3D3G", "6B:3D:31", "0x0x6B3D31", "6B3D31\t00", "６B3D31"])
def test_anything_but_hex_digits_in_hex_data_is_refused(data: str) -> None:
    # bytes.fromhex("6B 3D31") would silently accept the space.
    failure = error_of(f"{data};encoding=hex")
    assert failure.kind == "non_hex_characters"
    assert "character" in failure.message


def test_an_odd_number_of_hex_digits_is_odd_length_hex() -> None:
    failure = error_of("6B3D3;encoding=hex")
    assert failure.kind == "odd_length_hex"
    assert "5 digits" in failure.message


@pytest.mark.parametrize("value", [";encoding=hex", "0x;encoding=hex", "  ;pd=4", "04;encoding=hex"])
def test_hex_data_with_nothing_in_it_is_an_empty_payload(value: str) -> None:
    assert error_of(value).kind == "empty_payload"


@pytest.mark.parametrize("value", [";encoding=ascii", ";;", " ; ; "])
def test_a_plain_payload_of_only_separators_is_an_empty_payload(value: str) -> None:
    assert error_of(value).kind == "empty_payload"


def test_segments_after_hex_data_that_are_not_parameters_are_ignored_with_a_warning() -> None:
    decoded = decode("6B3D31;x-vendor=7;encoding=hex")
    assert decoded.pairs == {"k": "1"}
    assert any("ignored 1 segment" in warning for warning in decoded.warnings)


# --- Rule 7: the protocol discriminator octet -------------------------------------------------------


@pytest.mark.parametrize("octet", range(0x00, 0x09))
def test_a_leading_discriminator_octet_0x00_to_0x08_is_stripped_and_reported(octet: int) -> None:
    decoded = decode(f"{octet:02X}6B3D31;encoding=hex")
    assert decoded.pd == octet
    assert decoded.text == "k=1"
    assert decoded.warnings == (f"stripped the leading octet 0x{octet:02X} as the Q.931 protocol discriminator",)


def test_a_leading_tab_0x09_is_text_and_never_stripped() -> None:
    decoded = decode("096B3D31;encoding=hex")
    assert decoded.pd is None
    assert decoded.text == "\tk=1"
    assert decoded.warnings == ()


@pytest.mark.parametrize("octet", [0x0A, 0x1F, 0x7F])
def test_a_leading_control_octet_above_0x08_is_not_stripped_but_refused(octet: int) -> None:
    failure = error_of(f"{octet:02X}6B3D31;encoding=hex")
    assert failure.kind == "control_characters"
    assert failure.pd is None


@pytest.mark.parametrize("octet", [0x31, 0x41, 0x6B])
def test_a_leading_text_octet_is_never_stripped(octet: int) -> None:
    assert decode(f"{octet:02X}3D31;encoding=hex").text == chr(octet) + "=1"


def test_an_explicit_pd_parameter_wins_over_a_leading_discriminator_octet() -> None:
    decoded = decode("006B3D31;pd=4")
    assert decoded.pd == 4
    assert decoded.text == "k=1"
    assert any("pd parameter (4) wins" in warning for warning in decoded.warnings)


def test_a_pd_parameter_alone_removes_no_octet() -> None:
    decoded = decode("313233;pd=4")
    assert (decoded.pd, decoded.positional, decoded.warnings) == (4, ("123",), ())


def test_a_discriminator_character_in_plain_text_is_not_stripped() -> None:
    assert error_of("\x04k=1").kind == "control_characters"


# --- Rule 8: strict UTF-8 without control characters ------------------------------------------------


@pytest.mark.parametrize("data", ["C3", "C328", "EDA080", "C0AF", "FF", "6B3D31FE"])
def test_hex_that_is_not_strict_utf8_is_invalid_utf8(data: str) -> None:
    failure = error_of(f"{data};encoding=hex")
    assert failure.kind == "invalid_utf8"
    assert failure.text is None


def test_multi_byte_utf8_in_hex_is_decoded() -> None:
    assert decode(hexed("name=José;emoji=😀") + ";encoding=hex").pairs == {"name": "José", "emoji": "😀"}


@pytest.mark.parametrize("value", ["k=a\x00b", "k=a\x1bb", "k=a\x7fb", "k=a\nb;x=1"])
def test_control_characters_in_plain_text_are_refused(value: str) -> None:
    failure = error_of(value)
    assert failure.kind == "control_characters"
    assert "U+00" in failure.message


def test_control_characters_in_hex_text_are_refused() -> None:
    failure = error_of(hexed("k=a\x00b") + ";encoding=hex")
    assert failure.kind == "control_characters"
    assert "U+0000" in failure.message and "character 4" in failure.message


def test_a_tab_inside_a_value_is_allowed() -> None:
    assert decode("k=a\tb").pairs == {"k": "a\tb"}
    assert decode(hexed("k=a\tb") + ";encoding=hex").pairs == {"k": "a\tb"}


# --- Rule 9 and 10: the payload -------------------------------------------------------------------


def test_a_pd4_payload_with_three_values_fills_three_positional_values() -> None:
    decoded = decode("3530303131323233333434353b363738393b3132;pd=4")
    assert decoded.positional == ("500112233445", "6789", "12")
    assert decoded.pairs is None


def test_empty_items_are_dropped() -> None:
    assert decode("a;;b; ;").positional == ("a", "b")
    assert decode("k=1;;j=2;").pairs == {"k": "1", "j": "2"}


def test_keys_and_values_are_trimmed_and_key_case_is_kept() -> None:
    assert decode(" Acct = 1 ;\tLang\t=\ten").pairs == {"Acct": "1", "Lang": "en"}


def test_a_value_is_split_at_the_first_equals_only() -> None:
    assert decode("expr=a=b").pairs == {"expr": "a=b"}


def test_a_repeated_key_keeps_the_last_value_and_warns_with_the_key_name_only() -> None:
    decoded = decode("Pin=1111;Pin=2222;Pin=3333")
    assert decoded.pairs == {"Pin": "3333"}
    assert decoded.warnings == ("key 'Pin' appears more than once; the last value wins",)


@pytest.mark.parametrize("value", ["a=1;b", "a;b=1", "a=1;b;c=2"])
def test_items_with_and_without_equals_mixed_are_missing_equals(value: str) -> None:
    failure = error_of(value)
    assert failure.kind == "missing_equals"
    assert failure.text == value


@pytest.mark.parametrize("value", ["=v", "a=1; =2", "a=1;%=2;=3"])
def test_an_item_with_nothing_before_equals_is_an_empty_key(value: str) -> None:
    assert error_of(value).kind == "empty_key"


def test_a_key_of_100_characters_is_accepted_and_101_is_key_too_long() -> None:
    assert decode("K" * 100 + "=v").pairs == {"K" * 100: "v"}
    failure = error_of("K" * 101 + "=v")
    assert failure.kind == "key_too_long"
    assert "101 characters" in failure.message


def test_the_key_length_counts_decoded_characters() -> None:
    assert decode("%41" * 100 + "=v", max_length=BIG).pairs == {"A" * 100: "v"}


def test_a_value_of_4000_characters_is_accepted_and_4001_is_value_too_long() -> None:
    assert decode("k=" + "v" * 4000, max_length=BIG).pairs == {"k": "v" * 4000}
    failure = error_of("k=" + "v" * 4001, max_length=BIG)
    assert failure.kind == "value_too_long"
    assert "4001 characters" in failure.message


def test_a_positional_value_over_4000_characters_is_value_too_long() -> None:
    assert error_of("a;" + "v" * 4001, max_length=BIG).kind == "value_too_long"


# --- Rule 11: percent-decoding in plain mode ------------------------------------------------------


def test_plain_keys_and_values_are_percent_decoded_after_splitting() -> None:
    decoded = decode("first%20name=Jos%C3%A9;note=a%3Bb%3Dc;a%3Db=%25")
    assert decoded.pairs == {"first name": "José", "note": "a;b=c", "a=b": "%"}
    assert decoded.text == "first%20name=Jos%C3%A9;note=a%3Bb%3Dc;a%3Db=%25"


def test_percent_encoded_positional_values_are_decoded() -> None:
    assert decode("S%C3%A3o%20Paulo;12").positional == ("São Paulo", "12")


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("100%", "100%"),
        ("%ZZ", "%ZZ"),
        ("%4", "%4"),
        ("%C3", "%C3"),
        ("%e9t%e9", "%e9t%e9"),
        ("%C3%A9%FF", "é%FF"),
        ("%FF%C3%A9", "%FF\u00e9"),
        ("%ED%A0%80", "%ED%A0%80"),
        ("%E2%82", "%E2%82"),
        ("%E2%82%AC", "€"),
        ("%2541", "%41"),
    ],
)
def test_invalid_percent_sequences_stay_literal(raw: str, decoded: str) -> None:
    assert decode(f"k={raw}").pairs == {"k": decoded}


def test_percent_sequences_are_not_decoded_in_hex_mode() -> None:
    assert decode(hexed("k=a%20b") + ";encoding=hex").pairs == {"k": "a%20b"}


@pytest.mark.parametrize("value", ["k=a%00b", "k%0A=v", "a;%7F"])
def test_control_characters_after_percent_decoding_are_refused(value: str) -> None:
    assert error_of(value).kind == "control_characters"


def test_a_percent_encoded_tab_is_allowed() -> None:
    assert decode("k=a%09b").pairs == {"k": "a\tb"}


# --- Errors and report() --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Pin=4821;Acct",
        "Pin=4821\x01",
        "=4821",
        "Pin=4821;pd=4821",
        "4821;encoding=4821",
        hexed("Pin=4821\x00") + ";encoding=hex",
        "4821=" + "4821" * 1001,
    ],
)
def test_error_messages_never_echo_payload_values(value: str) -> None:
    failure = error_of(value, max_length=BIG)
    assert "4821" not in failure.message
    assert all("4821" not in warning for warning in failure.warnings)


def test_uui_error_is_a_value_error_with_its_kind_and_message() -> None:
    failure = error_of("")
    assert isinstance(failure, ValueError)
    assert str(failure) == failure.message
    assert failure.kind in ERROR_KINDS
    assert "empty" in repr(failure)


def test_report_of_an_error_carries_what_was_determined_before_the_failure() -> None:
    result = report("0A;pd=5")
    assert result == {
        "ok": False,
        "encoding": "hex",
        "params": {"pd": "5"},
        "pd": 5,
        "text": None,
        "pairs": None,
        "positional": None,
        "items": None,
        "warnings": [],
        "error": {"kind": "control_characters", "message": result["error"]["message"]},  # type: ignore[index]
    }


def test_report_is_json_serialisable() -> None:
    for value in ["3530303131323233333434353b363738393b3132;pd=4", "acct=1;acct=2", "00FA08;encoding=hex"]:
        assert json.loads(json.dumps(report(value))) == report(value)


def test_decoded_uui_is_frozen() -> None:
    decoded = decode("k=1")
    assert isinstance(decoded, DecodedUUI)
    with pytest.raises(AttributeError):
        decoded.text = "x"  # type: ignore[misc]


def test_decode_refuses_a_non_string_value() -> None:
    with pytest.raises(TypeError):
        decode(None)  # type: ignore[arg-type]


# --- Encoding for the onward transfer -------------------------------------------------------------


def test_encode_builds_the_three_product_forms_exactly() -> None:
    pairs = {"sipkey1": "sipval1", "sipkey2": "sipval2"}
    assert encode(pairs) == "sipkey1=sipval1;sipkey2=sipval2"
    assert encode(pairs, "hex") == ("7369706B6579313D73697076616C313B7369706B6579323D73697076616C32;encoding=hex")
    assert encode(["500112233445", "6789", "12"], "pd4") == "3530303131323233333434353b363738393b3132;pd=4"


def test_plain_encoding_percent_encodes_what_acs_refuses_and_the_separators() -> None:
    value = encode({"name": "John Smith", "city": "São Paulo", "note": "a;b=c%", "pad": " x\t"})
    assert value == "name=John%20Smith;city=S%C3%A3o%20Paulo;note=a%3Bb%3Dc%25;pad=%20x%09"
    assert fits_acs(value)
    assert decode(value).pairs == {"name": "John Smith", "city": "São Paulo", "note": "a;b=c%", "pad": " x\t"}


def test_plain_encoding_keeps_the_acs_punctuation_that_needs_no_escape() -> None:
    assert encode({"k": "a.b!c*d_e+f~g-h"}) == "k=a.b!c*d_e+f~g-h"


def test_reserved_names_travel_as_keys_in_hex() -> None:
    value = encode({"pd": "4", "Encoding": "x"}, "hex")
    assert decode(value).pairs == {"pd": "4", "Encoding": "x"}


def test_a_hex_encoded_value_of_121_bytes_fits_acs_and_122_does_not() -> None:
    assert len(encode(["v" * 121], "hex")) == 255
    with pytest.raises(UUIEncodeError, match="257 characters long; the limit is 256"):
        encode(["v" * 122], "hex")


SECRET = "S3cr3tV4lue"


@pytest.mark.parametrize(
    ("values", "format", "options", "message"),
    [
        ({}, "plain", {}, "there are no context variables to send"),
        ([], "hex", {}, "there are no positional values to send"),
        ({"": SECRET}, "plain", {}, "context variable 1 has an empty name"),
        ({"K" * 101: SECRET}, "plain", {}, "is 101 characters long; the limit is 100"),
        ({"k": SECRET * 400}, "plain", {"max_length": BIG}, "'k' is 4400 characters long; the limit is 4000"),
        ({"k": SECRET + "\x00"}, "plain", {}, "'k' contains control character U+0000 at character 12"),
        ({"k\x1b": SECRET}, "hex", {}, "'k\\x1b' contains control character U+001B"),
        ({"k": SECRET + ";"}, "hex", {}, "value of context variable 'k' contains ';'"),
        ({"k": SECRET + ";"}, "pd4", {}, "value of context variable 'k' contains ';'"),
        ({"a=b": SECRET}, "hex", {}, "name of context variable 'a=b' contains '='"),
        ({"a;b": SECRET}, "pd4", {}, "name of context variable 'a;b' contains ';'"),
        ([SECRET, "x=" + SECRET], "pd4", {}, "positional value 2 contains '='"),
        ([SECRET, SECRET + ";"], "hex", {}, "positional value 2 contains ';'"),
        ([SECRET, ""], "plain", {}, "positional value 2 is empty"),
        ({"k": " " + SECRET}, "hex", {}, "starts or ends with whitespace"),
        ({"k ": SECRET}, "pd4", {}, "name of context variable 'k ' starts or ends with whitespace"),
        ([SECRET + "\t"], "hex", {}, "positional value 1 starts or ends with whitespace"),
        ({"pd": SECRET}, "plain", {}, "'pd' cannot be sent in plain format"),
        ({"a": "1", "Purpose": SECRET}, "plain", {}, "'Purpose' cannot be sent in plain format"),
        ([SECRET + "é"], "pd4", {}, "pd=4 (IA5) cannot carry"),
        ({"k": SECRET * 30}, "plain", {}, "would be 332 characters long; the limit is 256"),
        ({"k": SECRET}, "plain", {"max_length": 10}, "would be 13 characters long; the limit is 10"),
        ({"k": SECRET + "\ud800"}, "plain", {}, "unpaired surrogate at character 12"),
        ({"k": SECRET}, "base64", {}, "unknown UUI format 'base64'"),
    ],
)
def test_encode_refuses_with_a_clear_message_that_never_shows_the_value(
    values: Mapping[str, str] | Sequence[str], format: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UUIEncodeError) as caught:
        encode(values, format, **options)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_encode_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        encode("k=v")


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("", True),
        ("a" * 256, True),
        ("a" * 257, False),
        (string.ascii_letters + string.digits + "=;.!%*_+~-", True),
        ("a b", False),
        ("a/b", False),
        ("é", False),
        ("a\n", False),
        ("a,b", False),
    ],
)
def test_fits_acs_checks_the_direct_routing_length_and_characters(value: str, fits: bool) -> None:
    assert fits_acs(value) is fits


def test_the_acs_constants_state_the_direct_routing_limits() -> None:
    assert ACS_UUI_MAX == 256
    assert len(ACS_UUI_CHARSET) == 26 * 2 + 10 + 10
    assert set("=;.!%*_+~-") <= set(ACS_UUI_CHARSET)


# --- Properties -----------------------------------------------------------------------------------

PRINTABLE_TRICKY = [*';=%", \t\x85\xa0é€😀\u2028', "%3D", "%C3", "%25", "0x"]
CONTROLS = ["\x00", "\x04", "\x08", "\r", "\n", "\x1f", "\x7f"]
TRICKY = PRINTABLE_TRICKY + CONTROLS
_char = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(exclude_categories=("Cs", "Cc")),
    st.sampled_from(PRINTABLE_TRICKY),
)
_text = st.lists(_char, max_size=8).map("".join)
_text_with_controls = st.lists(st.one_of(_char, st.sampled_from(CONTROLS)), max_size=8).map("".join)
_key = st.one_of(*[_text] * 7, st.sampled_from([*RESERVED, "PD", "Purpose"]))
# One collection in three may hold control characters; the others hold the other hard cases (";",
# "=", "%", whitespace, non-ASCII, reserved names), so both refusals and round trips are common.
broad_pairs = st.one_of(
    st.dictionaries(_key, _text, max_size=5),
    st.dictionaries(_key, _text, max_size=5),
    st.dictionaries(st.one_of(_key, _text_with_controls), _text_with_controls, max_size=5),
)
broad_positional = st.one_of(
    st.lists(_text, max_size=5), st.lists(_text, max_size=5), st.lists(_text_with_controls, max_size=5)
)

_SAFE = set(string.ascii_letters + string.digits + "!*+_.-~")


def escaped_length(text: str) -> int:
    return sum(1 if char in _SAFE else 3 * len(char.encode()) for char in text)


def expected_length(values: Mapping[str, str] | Sequence[str], format: str) -> int:
    if isinstance(values, Mapping):
        items = [f"{key}={value}" for key, value in values.items()]
        plain = [escaped_length(key) + 1 + escaped_length(value) for key, value in values.items()]
    else:
        items = list(values)
        plain = [escaped_length(value) for value in values]
    if format == "plain":
        return sum(plain) + len(plain) - 1
    octets = len(";".join(items).encode())
    return 2 * octets + (len(";encoding=hex") if format == "hex" else len(";pd=4"))


def documented_refusals(values: Mapping[str, str] | Sequence[str], format: str, max_length: int) -> set[str]:
    """Why encode() must refuse ``values``, worked out independently of shared.uui."""
    reasons: set[str] = set()

    def check(text: str) -> None:
        if len(text) > 4000:
            reasons.add("too long")
        if any((ord(char) < 0x20 and char != "\t") or char == "\x7f" for char in text):
            reasons.add("control character")
        if format != "plain":
            if text != text.strip(" \t"):
                reasons.add("whitespace")
            if ";" in text:
                reasons.add("semicolon")
            if format == "pd4" and not text.isascii():
                reasons.add("non-ASCII")

    if not values:
        reasons.add("nothing to send")
    if isinstance(values, Mapping):
        for key, value in values.items():
            if not key:
                reasons.add("empty key")
            if len(key) > 100:
                reasons.add("key too long")
            if format == "plain" and key.lower() in RESERVED:
                reasons.add("reserved key")
            if format != "plain" and "=" in key:
                reasons.add("equals in key")
            check(key)
            check(value)
    else:
        for value in values:
            if not value:
                reasons.add("empty value")
            if format != "plain" and "=" in value:
                reasons.add("equals in value")
            check(value)
    if not reasons and expected_length(values, format) > max_length:
        reasons.add("over the size limit")
    return reasons


def round_trips(values: Mapping[str, str] | Sequence[str], format: str, max_length: int) -> None:
    try:
        encoded = encode(values, format, max_length=max_length)
    except UUIEncodeError as refusal:
        assert documented_refusals(values, format, max_length), f"undocumented refusal: {refusal}"
        return
    assert not documented_refusals(values, format, max_length)
    assert len(encoded) == expected_length(values, format) <= max_length
    if max_length <= ACS_UUI_MAX:
        assert fits_acs(encoded)
    decoded = decode(encoded, max_length=max_length)
    if isinstance(values, Mapping):
        assert decoded.pairs == dict(values)
    else:
        assert decoded.positional == tuple(values)
    assert decoded.warnings == ()


@pytest.mark.parametrize("format", TEXT_FORMATS)
@ROUND_TRIP
@given(values=broad_pairs, max_length=st.sampled_from([ACS_UUI_MAX, BIG]))
def test_encoded_context_variables_decode_back_or_are_refused_for_a_documented_reason(
    format: str, values: dict[str, str], max_length: int
) -> None:
    round_trips(values, format, max_length)


@pytest.mark.parametrize("format", TEXT_FORMATS)
@ROUND_TRIP
@given(values=broad_positional, max_length=st.sampled_from([ACS_UUI_MAX, BIG]))
def test_encoded_positional_values_decode_back_or_are_refused_for_a_documented_reason(
    format: str, values: list[str], max_length: int
) -> None:
    round_trips(values, format, max_length)


# Inputs encode() accepts by construction, so the round trip itself is exercised every time.
def _clean(format: str, *, key: bool) -> st.SearchStrategy[str]:
    if format == "pd4":
        alphabet = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    else:
        alphabet = st.one_of(st.characters(exclude_categories=("Cs", "Cc")), st.sampled_from(list('\t %=;",')))
    text = st.text(alphabet, max_size=8)
    if format != "plain":
        forbidden = ";=" if key else ";"
        text = text.map(lambda t: "".join(c for c in t if c not in forbidden).strip(" \t"))
    if key:
        text = text.filter(lambda t: t != "" and (format != "plain" or t.lower() not in RESERVED))
    return text


@pytest.mark.parametrize("format", TEXT_FORMATS)
@ROUND_TRIP
@given(data=st.data())
def test_decode_of_encode_gives_back_every_accepted_mapping(format: str, data: st.DataObject) -> None:
    values = data.draw(st.dictionaries(_clean(format, key=True), _clean(format, key=False), min_size=1, max_size=6))
    encoded = encode(values, format, max_length=BIG)
    assert decode(encoded, max_length=BIG).pairs == values


@pytest.mark.parametrize("format", TEXT_FORMATS)
@ROUND_TRIP
@given(data=st.data())
def test_decode_of_encode_gives_back_every_accepted_sequence(format: str, data: st.DataObject) -> None:
    # Positional values are, like keys, non-empty and without "=" outside plain.
    values = data.draw(st.lists(_clean(format, key=True), min_size=1, max_size=6))
    encoded = encode(values, format, max_length=BIG)
    assert decode(encoded, max_length=BIG).positional == tuple(values)


HEADER_PIECES = [
    ";", ",", '"', "=", " ", "\t", "%", "%C3", "%A9", "%00", "0x", "04", "00", "FA", "6B3D31",
    "encoding", "hex", "ascii", "base64", "pd", "4", "256", "purpose", "content", "isdn-uui", "\x04", "é",
]  # fmt: skip
header_like = st.lists(st.sampled_from(HEADER_PIECES), max_size=20).map("".join)


@PROPERTY
@given(
    value=st.one_of(st.text(), header_like),
    max_length=st.sampled_from([0, 5, ACS_UUI_MAX, BIG]),
    default_encoding=st.sampled_from(["plain", "hex"]),
)
def test_decode_of_any_text_raises_nothing_but_uui_error_and_report_keeps_its_shape(
    value: str, max_length: int, default_encoding: str
) -> None:
    try:
        decoded = decode(value, max_length=max_length, default_encoding=default_encoding)
    except UUIError as failure:
        assert failure.kind in ERROR_KINDS
        assert failure.message
        assert failure.encoding in (None, "plain", "hex")
    else:
        assert decoded.encoding in ("plain", "hex")
        assert (decoded.pairs is None) != (decoded.positional is None)
    result = report(value, max_length=max_length, default_encoding=default_encoding)
    assert set(result) == REPORT_KEYS
    assert isinstance(result["warnings"], list)
    assert result["positional"] is None or isinstance(result["positional"], list)
    error = result["error"]
    if result["ok"]:
        assert error is None
    else:
        assert isinstance(error, dict) and set(error) == {"kind", "message"}
        assert error["kind"] in ERROR_KINDS


SECRET_ITEMS = [
    *["k{n}={s}{j}", "{s}{j}", "={s}{j}", "k={long}", "{long}", "pd={s}", "encoding={s}", "purpose={s},{s}"],
    *["encoding=hex", "encoding=ascii", "pd=4", "purpose=isdn-uui", "k1=x", "="],
]
SECRET_JUNK = ["", "\x00", "\x01", "\x7f", "%00", "%C3", '"', ",", " ", "é", "\n"]


@st.composite
def headers_hiding_a_secret(draw: st.DrawFn) -> tuple[str, str]:
    secret = f"PIN{draw(st.integers(100_000, 999_999))}"
    item = st.tuples(st.sampled_from(SECRET_ITEMS), st.sampled_from(SECRET_JUNK), st.integers(0, 3))
    header = ";".join(
        template.format(s=secret, j=junk, n=number, long=secret * 500)
        for template, junk, number in draw(st.lists(item, min_size=1, max_size=5))
    )
    if draw(st.booleans()):
        header = hexed(header) + draw(st.sampled_from(["", "0", "G", "FF"])) + ";encoding=hex"
    return secret, header


@PROPERTY
@given(case=headers_hiding_a_secret(), default_encoding=st.sampled_from(["plain", "hex"]))
def test_error_messages_and_warnings_never_contain_a_payload_value(
    case: tuple[str, str], default_encoding: str
) -> None:
    secret, header = case
    result = report(header, max_length=BIG, default_encoding=default_encoding)
    error = result["error"]
    if isinstance(error, dict):
        assert secret not in error["message"]
    assert isinstance(result["warnings"], list)
    assert all(secret not in warning for warning in result["warnings"])


@pytest.mark.parametrize("format", ENCODE_FORMATS)
@ROUND_TRIP
@given(
    secret=st.integers(100_000, 999_999).map(lambda n: f"PIN{n}"),
    junk=st.lists(st.sampled_from(TRICKY), max_size=3).map("".join),
    positional=st.booleans(),
    repeat=st.sampled_from([1, 30, 500]),
)
def test_encode_refusals_never_contain_the_value(
    format: str, secret: str, junk: str, positional: bool, repeat: int
) -> None:
    value = junk + secret * repeat + junk
    values: Mapping[str, str] | Sequence[str] = [value, ""] if positional else {"k": value, "pd": value}
    try:
        encode(values, format)
    except UUIEncodeError as refusal:
        assert secret not in str(refusal)
