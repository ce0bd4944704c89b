"""Avaya shared UUI (workstream profile avaya-shared): items, the UCID, and the way back for a transfer.

Expected values come from the sources (tests/data/uui-avaya-shared.json) or are built by hand here
from the documented layout: 00, then ID | LEN | VALUE items; the UCID is item FA, 8 bytes,
big-endian uint16 node, uint16 sequence, uint32 seconds, shown as 5 + 5 + 10 digits.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.uui import (
    ACS_UUI_MAX,
    ERROR_KINDS,
    UUIEncodeError,
    UUIError,
    UUIItem,
    decode,
    decode_avaya_shared,
    encode,
    fits_acs,
    normalise_item_names,
    report,
)
from tests.conftest import DATA, load_json

VECTORS: list[dict[str, Any]] = load_json(DATA / "uui-avaya-shared.json")
COMPARED = ("ok", "encoding", "params", "pd", "pairs", "positional", "items")
BIG = 100_000
PROPERTY = settings(max_examples=200, deadline=None)

# The AudioCodes manual's real header and the UCID its bytes give (node 25, sequence 16, 955721139).
AUDIOCODES = "00FA080019001038F725B3;encoding=hex"
AUDIOCODES_UCID = "00025000160955721139"
# The trgtech worked example: node 21, sequence 5, time 946085673.
TRGTECH_UCID = "00021000050946085673"
TRGTECH_ITEM = "FA08" + "0015" + "0005" + "38641F29"  # 21, 5 and 946085673 in big-endian hex


def shared(*items: tuple[int, bytes]) -> str:
    """A shared UUI value built by hand from the documented layout."""
    octets = b"\x00"
    for ident, value in items:
        octets += bytes([ident, len(value)]) + value
    return octets.hex().upper() + ";encoding=hex"


def ucid_bytes(node: int, sequence: int, seconds: int) -> bytes:
    return node.to_bytes(2, "big") + sequence.to_bytes(2, "big") + seconds.to_bytes(4, "big")


def failure_of(value: str, **options: Any) -> UUIError:
    with pytest.raises(UUIError) as caught:
        decode_avaya_shared(value, **options)
    return caught.value


# --- The public vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["id"] for vector in VECTORS])
def test_every_avaya_shared_vector_decodes_as_its_source_says(vector: dict[str, Any]) -> None:
    expected = vector["expected"]
    names = normalise_item_names(vector.get("item_names", {}))
    result = report(vector["header_value"], profile=vector["profile"], item_names=names)
    assert {key: result[key] for key in COMPARED} == {key: expected[key] for key in COMPARED}
    assert (result["error"] or {}).get("kind") == expected["error_kind"]
    if expected["ok"]:
        decoded = decode_avaya_shared(vector["header_value"], item_names=names)
        assert decoded.pairs == expected["pairs"]
        items = expected["items"]
        assert decoded.items == (None if items is None else tuple(UUIItem(**item) for item in items))


def test_the_vectors_cover_both_sources_and_every_shared_uui_error() -> None:
    ids = {vector["id"] for vector in VECTORS}
    assert {"audiocodes-ucid", "trgtech-worked-example", "service-provider-plain"} <= ids
    kinds = {vector["expected"]["error_kind"] for vector in VECTORS} - {None}
    assert kinds == {"truncated_item", "bad_ucid", "empty_payload"}
    assert kinds <= ERROR_KINDS
    assert all(vector["source"] for vector in VECTORS)


# --- Reading shared UUI ---------------------------------------------------------------------------


def test_an_avaya_shared_payload_with_a_ucid_item_gives_the_20_digit_ucid() -> None:
    decoded = decode_avaya_shared("00" + TRGTECH_ITEM + ";encoding=hex")
    assert decoded.pairs == {"UCID": TRGTECH_UCID}
    assert decoded.items == (UUIItem("FA", "UCID", 8, TRGTECH_UCID),)
    assert (decoded.encoding, decoded.pd, decoded.positional) == ("hex", 0, None)
    # The expected discriminator is the normal case: no warning on every call.
    assert decoded.warnings == ()


def test_the_profile_is_chosen_through_decode_as_a_workstream_does() -> None:
    assert decode(AUDIOCODES, profile="avaya-shared").pairs == {"UCID": AUDIOCODES_UCID}
    # Without the profile the same header stays binary vendor data, an error (rule 8).
    with pytest.raises(UUIError) as caught:
        decode(AUDIOCODES)
    assert caught.value.kind == "invalid_utf8"


def test_an_unknown_profile_is_a_configuration_error_not_a_uui_error() -> None:
    with pytest.raises(ValueError, match="profile") as caught:
        decode(AUDIOCODES, profile="genesys")
    assert not isinstance(caught.value, UUIError)


@pytest.mark.parametrize(
    ("node", "sequence", "seconds", "ucid"),
    [
        (1, 1, 0, "00001000010000000000"),
        (32767, 65535, 4294967295, "32767655354294967295"),  # the largest of each part
        (21, 5, 946085673, TRGTECH_UCID),
    ],
)
def test_each_ucid_part_fills_its_digits_with_leading_zeros(node: int, sequence: int, seconds: int, ucid: str) -> None:
    assert decode_avaya_shared(shared((0xFA, ucid_bytes(node, sequence, seconds)))).pairs == {"UCID": ucid}


def test_a_ucid_node_above_32767_is_a_bad_ucid_that_shows_no_digits() -> None:
    failure = failure_of(shared((0xFA, ucid_bytes(32768, 5, 946085673))))
    assert failure.kind == "bad_ucid"
    assert "32768" not in failure.message and "946085673" not in failure.message
    assert "node id above 32767" in failure.message


@pytest.mark.parametrize("length", [0, 7, 9])
def test_a_ucid_of_any_length_but_8_is_a_bad_ucid(length: int) -> None:
    failure = failure_of(shared((0xFA, bytes(range(length)))))
    assert failure.kind == "bad_ucid"
    assert f"is {length} bytes long; a UCID is 8" in failure.message


def test_an_item_running_past_the_end_is_truncated_and_says_where() -> None:
    value = "00" + TRGTECH_ITEM + "C80541;encoding=hex"  # C8 declares 5 bytes, 1 follows
    failure = failure_of(value)
    assert failure.kind == "truncated_item"
    # Byte 12 of the hex data: 00 is byte 1, the UCID item bytes 2-11.
    assert failure.message == "item 2 at byte 12 of the hex data (id C8) declares 5 bytes but only 1 remain"
    assert failure.pd == 0 and failure.encoding == "hex"


def test_items_are_counted_from_the_first_byte_when_pd_0_replaces_the_discriminator_octet() -> None:
    failure = failure_of("C8;pd=0")
    assert failure.message == "item 1 at byte 1 of the hex data has an id but no length byte"


def test_a_text_item_is_its_text_and_anything_else_its_hex_digits() -> None:
    decoded = decode_avaya_shared(
        shared(
            (0xC8, "São Paulo".encode()),
            (0xC9, b"a\tb"),  # TAB is text (rule 8)
            (0xCA, b"PIN\x001234"),  # a NUL is not
            (0xCB, b"\xc3"),  # half a UTF-8 character
            (0xCC, b""),
        )
    )
    assert decoded.pairs == {
        "ItemC8": "São Paulo",
        "ItemC9": "a\tb",
        "ItemCA": "50494E0031323334",
        "ItemCB": "C3",
        "ItemCC": "",
    }
    # LEN tells text from hex digits: 10 bytes of São Paulo, 8 bytes shown as 16 digits.
    assert [item.length for item in decoded.items or ()] == [10, 3, 8, 1, 0]


def test_the_workstream_names_items_and_the_others_stay_item_with_their_id() -> None:
    names = normalise_item_names({"c8": "UserData"})
    decoded = decode_avaya_shared(shared((0xC8, b"ACCT=42"), (0x0A, b"x")), item_names=names)
    assert decoded.pairs == {"UserData": "ACCT=42", "Item0A": "x"}
    assert [item.name for item in decoded.items or ()] == ["UserData", "Item0A"]


def test_a_repeated_item_keeps_the_last_value_in_pairs_and_both_in_items() -> None:
    decoded = decode_avaya_shared(shared((0xC8, b"first"), (0xC8, b"second")))
    assert decoded.pairs == {"ItemC8": "second"}
    assert [item.value for item in decoded.items or ()] == ["first", "second"]
    assert decoded.warnings == ("item C8 (ItemC8) appears more than once; the last value wins",)


def test_a_value_that_is_not_shared_uui_is_read_in_the_standard_forms_with_a_warning() -> None:
    for value in ["Intent=billing", "496E74656E743D62696C6C696E67;encoding=hex", "04496E74656E743D62696C6C696E67;pd=4"]:
        decoded = decode_avaya_shared(value)
        assert decoded.pairs == {"Intent": "billing"}
        assert decoded.items is None
        assert any("service-provider mode" in warning for warning in decoded.warnings)


def test_a_pd_parameter_other_than_0_wins_over_a_leading_00_octet() -> None:
    decoded = decode_avaya_shared("00496E74656E743D62696C6C696E67;pd=4")
    assert (decoded.pd, decoded.pairs, decoded.items) == (4, {"Intent": "billing"}, None)


def test_a_service_provider_value_that_cannot_be_decoded_keeps_its_own_error_and_the_warning() -> None:
    failure = failure_of("a=1;b")
    assert failure.kind == "missing_equals"
    assert any("service-provider mode" in warning for warning in failure.warnings)


def test_bare_shared_data_is_hex_only_when_the_workstream_says_so() -> None:
    # Hex is never guessed from the look of the data (rule 5).
    assert decode_avaya_shared("00" + TRGTECH_ITEM).positional == ("00" + TRGTECH_ITEM,)
    assert decode_avaya_shared("00" + TRGTECH_ITEM, default_encoding="hex").pairs == {"UCID": TRGTECH_UCID}


def test_the_header_rules_of_the_standard_forms_apply_first() -> None:
    assert failure_of("00FA08;encoding=base64").kind == "unsupported_encoding"
    assert failure_of("00FA0;encoding=hex").kind == "odd_length_hex"
    assert failure_of(AUDIOCODES, max_length=10).kind == "oversized"


def test_error_messages_and_warnings_never_echo_item_values() -> None:
    secret = b"PIN4821"
    for value in [
        "00C807" + secret.hex()[:-4] + ";encoding=hex",  # C8 declares 7 bytes, 5 follow
        shared((0xFA, secret)),  # a UCID of 7 bytes
        shared((0xFA, b"\xff\xff" + secret[:6])),  # node above 32767
        shared((0xC8, secret), (0xC8, secret)),  # a repeated item: a warning
    ]:
        result = report(value, profile="avaya-shared")
        shown = [(result["error"] or {}).get("message", ""), *result["warnings"]]
        assert result["error"] is not None or result["warnings"]
        for text in (secret.decode(), secret.hex(), secret.hex().upper(), "4821"):
            assert all(text not in line for line in shown)


# --- item_names: the workstream's uui.items -------------------------------------------------------


def test_item_ids_are_normalised_to_upper_case() -> None:
    assert normalise_item_names({"c8": "UserData", "0a": "Vdn"}) == {"C8": "UserData", "0A": "Vdn"}


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ({"C": "UserData"}, "item id 'C' is not two hex digits"),
        ({"C8X": "UserData"}, "is not two hex digits"),
        ({"G1": "UserData"}, "is not two hex digits"),
        ({"c8": "UserData", "C8": "Other"}, "item C8 is named twice"),
        ({"FA": "CallId"}, "item FA is the UCID: it always fills the context variable UCID"),
        ({"C8": "UCID"}, "item C8 cannot be named 'UCID'"),
        ({"C8": "ItemC9"}, "item C8 cannot be named 'ItemC9'"),
        ({"C8": "UserData", "C9": "UserData"}, "items C8 and C9 are both named 'UserData'"),
    ],
)
def test_item_names_refuse_what_would_make_two_items_one_variable(names: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_item_names(names)


def test_an_item_may_be_named_by_its_own_default_name() -> None:
    assert normalise_item_names({"c8": "ItemC8"}) == {"C8": "ItemC8"}


# --- Encoding for the onward transfer -------------------------------------------------------------


def test_encode_builds_the_ucid_and_a_text_item_byte_for_byte() -> None:
    # 00, the trgtech UCID item, then C8, length 7, the ASCII of ACCT=42.
    expected = "00" + TRGTECH_ITEM + "C807" + "414343543D3432" + ";encoding=hex"
    assert encode({"UCID": TRGTECH_UCID, "ItemC8": "ACCT=42"}, "avaya-shared") == expected


def test_encode_of_the_audiocodes_ucid_gives_the_audiocodes_header() -> None:
    assert encode({"UCID": AUDIOCODES_UCID}, "avaya-shared") == AUDIOCODES


def test_encode_sends_a_named_item_under_its_id() -> None:
    value = encode({"UserData": "ACCT=42"}, "avaya-shared", item_names={"C8": "UserData"})
    assert value == "00C807414343543D3432;encoding=hex"


def test_a_shared_uui_of_121_bytes_fits_acs_and_122_does_not() -> None:
    # 00 + C8 + LEN + 118 bytes = 121 bytes = 242 hex digits + ";encoding=hex" (13) = 255.
    assert len(encode({"ItemC8": "v" * 118}, "avaya-shared")) == 255
    assert fits_acs(encode({"ItemC8": "v" * 118}, "avaya-shared"))
    with pytest.raises(UUIEncodeError, match="257 characters long; the limit is 256"):
        encode({"ItemC8": "v" * 119}, "avaya-shared")


SECRET = "S3cr3tV4lue"


@pytest.mark.parametrize(
    ("values", "names", "message"),
    [
        ([SECRET], {}, "carries named items (UCID, Item<ID>), not positional values"),
        ({}, {}, "there are no context variables to send"),
        ({"Intent": SECRET}, {}, "context variable 'Intent' is not an item of avaya-shared"),
        ({"ItemC": SECRET}, {}, "'ItemC' is not an item"),
        ({"ItemFA": SECRET}, {}, "item FA is the UCID: send it as UCID"),
        ({"ItemC8": SECRET, "UserData": SECRET}, {"C8": "UserData"}, "'ItemC8' and 'UserData' would both be item C8"),
        ({"UCID": SECRET}, {}, "is not a UCID: 20 digits"),
        ({"UCID": "0002100005094608567"}, {}, "is not a UCID: 20 digits"),
        ({"UCID": "０００２１００００５０９４６０８５６７３"}, {}, "is not a UCID: 20 digits"),
        ({"UCID": "32768000050946085673"}, {}, "node id (digits 1-5) is above 32767"),
        ({"UCID": "00021655360946085673"}, {}, "sequence (digits 6-10) is above 65535"),
        ({"UCID": "00021000054294967296"}, {}, "seconds (digits 11-20) is above 4294967295"),
        ({"ItemC8": SECRET * 24}, {}, "is 264 bytes of UTF-8; a shared UUI item holds at most 255"),
        ({"ItemC8": SECRET + "\x00"}, {}, "contains control character U+0000 at character 12"),
        ({"ItemC8": SECRET * 12}, {}, "would be 283 characters long; the limit is 256"),
    ],
)
def test_encode_refuses_what_shared_uui_cannot_carry_without_showing_the_value(
    values: Any, names: dict[str, str], message: str
) -> None:
    with pytest.raises(UUIEncodeError) as caught:
        encode(values, "avaya-shared", item_names=names)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


# --- Properties -----------------------------------------------------------------------------------

item_ids = st.integers(0, 255).filter(lambda ident: ident != 0xFA)
ucids = st.tuples(st.integers(0, 32767), st.integers(0, 65535), st.integers(0, 2**32 - 1))
text_values = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.just("\t"), max_size=20).filter(
    lambda text: len(text.encode()) <= 255
)


@PROPERTY
@given(
    ucid=st.none() | ucids,
    values=st.dictionaries(item_ids, text_values, max_size=5),
    named=st.sets(st.integers(0, 4), max_size=3),
)
def test_decode_of_encode_gives_back_every_ucid_and_text_item(
    ucid: tuple[int, int, int] | None, values: dict[int, str], named: set[int]
) -> None:
    ids = [f"{ident:02X}" for ident in values]
    names = {ids[i]: f"Named{i}" for i in named if i < len(ids)}
    context = {names.get(ident, f"Item{ident}"): value for ident, value in zip(ids, values.values(), strict=True)}
    if ucid is not None:
        node, sequence, seconds = ucid
        context["UCID"] = f"{node:05d}{sequence:05d}{seconds:010d}"
    if not context:
        return
    encoded = encode(context, "avaya-shared", max_length=BIG, item_names=names)
    decoded = decode_avaya_shared(encoded, max_length=BIG, item_names=names)
    assert decoded.pairs == context
    # Lengths by hand: the UCID's 8 bytes, each text item its UTF-8 bytes, in the order sent.
    assert [item.length for item in decoded.items or ()] == [
        8 if name == "UCID" else len(value.encode()) for name, value in context.items()
    ]
    assert decoded.warnings == ()


@PROPERTY
@given(st.lists(st.tuples(item_ids, st.binary(max_size=12)), min_size=1, max_size=6))
def test_any_items_built_by_the_layout_decode_to_their_text_or_hex_digits(items: list[tuple[int, bytes]]) -> None:
    decoded = decode_avaya_shared(shared(*items), max_length=BIG)
    expected: list[UUIItem] = []
    for ident, raw in items:
        try:
            text: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and any((ord(char) < 0x20 and char != "\t") or char == "\x7f" for char in text):
            text = None
        value = raw.hex().upper() if text is None else text
        expected.append(UUIItem(f"{ident:02X}", f"Item{ident:02X}", len(raw), value))
    assert decoded.items == tuple(expected)


HEADER_PIECES = ["00", "FA", "08", "C8", "0019001038F725B3", "FF", "0", ";", "encoding=hex", "pd=0", "pd=4", "k=1", " "]


@PROPERTY
@given(
    value=st.one_of(st.text(), st.lists(st.sampled_from(HEADER_PIECES), max_size=12).map("".join)),
    max_length=st.sampled_from([5, ACS_UUI_MAX, BIG]),
    default_encoding=st.sampled_from(["plain", "hex"]),
)
def test_the_profile_raises_nothing_but_uui_error_and_report_keeps_its_shape(
    value: str, max_length: int, default_encoding: str
) -> None:
    try:
        decoded = decode_avaya_shared(value, max_length=max_length, default_encoding=default_encoding)
    except UUIError as failure:
        assert failure.kind in ERROR_KINDS and failure.message
    else:
        # Items only ever come from data marked user-specific.
        assert decoded.items is None or (decoded.pd == 0 and decoded.encoding == "hex")
    result = report(value, max_length=max_length, default_encoding=default_encoding, profile="avaya-shared")
    assert json.loads(json.dumps(result)) == result
