"""Re-encoding the context for the onward transfer: never what ACS would refuse, never a silent cut."""

from __future__ import annotations

import io
import json

import pytest

from shared import cli
from shared.core import transfer, uui
from shared.core.values import convert

ORDER = ("AccountNumber", "Intent", "Priority", "IsVip", "Note")


def decode_with_the_command(value: str) -> dict:
    out = io.StringIO()
    assert cli.main(["decode", value, "--json"], out=out, err=io.StringIO()) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("fmt", ["plain", "hex", "pd4"])
def test_a_small_context_travels_whole_in_user_to_user_and_decodes_back_to_its_types(fmt: str) -> None:
    # Each variable as the IVR sent it: the number with a leading zero, the flag as "no".
    context = {"AccountNumber": "500112233445", "Intent": "billing", "Priority": "07", "IsVip": "no"}
    built = transfer.build(context, ORDER, "+14255550123", fmt)
    assert built.voip_headers is None and built.omitted == () and built.uui_format == fmt
    assert set(built.sip_headers or {}) == {"User-To-User"}
    pairs = decode_with_the_command(built.sip_headers["User-To-User"])["pairs"]
    assert pairs == context  # the same text, not a reformatted number
    types = {"AccountNumber": "text", "Intent": "text", "Priority": "number", "IsVip": "boolean"}
    assert {k: convert(types[k], v) for k, v in pairs.items()} == {
        "AccountNumber": "500112233445",
        "Intent": "billing",
        "Priority": 7,
        "IsVip": False,
    }


def test_plain_values_outside_the_acs_set_are_percent_encoded_and_fit() -> None:
    context = {"Note": "São Paulo / 2nd floor; room=4"}
    built = transfer.build(context, ORDER, "+14255550123", "plain")
    value = built.sip_headers["User-To-User"]
    assert uui.fits_acs(value)
    assert uui.decode(value).pairs == {"Note": "São Paulo / 2nd floor; room=4"}


def test_when_plain_cannot_carry_a_value_hex_is_used_and_said() -> None:
    # Percent-encoding triples each byte of "ü" (%C3%BC): 270 characters in plain, 203 in hex.
    context = {"Note": "ü" * 45}
    built = transfer.build(context, ORDER, "+14255550123", "plain")
    assert built.uui_format == "hex"
    assert built.sip_headers["User-To-User"].endswith(";encoding=hex")
    assert any("sent as hex" in n for n in built.notes)
    assert uui.decode(built.sip_headers["User-To-User"]).pairs == context


def test_what_does_not_fit_user_to_user_goes_as_custom_headers_in_declaration_order() -> None:
    context = {"AccountNumber": "5" * 115, "Intent": "i" * 115, "Priority": "7", "IsVip": "true"}
    built = transfer.build(context, ORDER, "+14255550123", "plain")
    sip = built.sip_headers or {}
    # The first declared variables fill User-To-User; the rest follow as X-MS-Custom headers.
    assert uui.decode(sip["User-To-User"]).pairs == {"AccountNumber": "5" * 115, "Intent": "i" * 115}
    assert sip["X-MS-Custom-Priority"] == "7" and sip["X-MS-Custom-IsVip"] == "true"
    assert built.omitted == ()
    assert all(len(v) <= 256 for v in sip.values()) and all(len(k) <= 64 for k in sip)


def test_more_than_five_leftovers_are_omitted_by_name_never_cut() -> None:
    names = [f"V{i}" for i in range(12)]
    context = {n: "x" * 60 for n in names}
    built = transfer.build(context, names, "+14255550123", "plain")
    sip = built.sip_headers or {}
    in_uui = list(uui.decode(sip["User-To-User"]).pairs or {})
    custom = [k.removeprefix("X-MS-Custom-") for k in sip if k.startswith("X-MS-Custom-")]
    assert len(custom) == 5
    assert in_uui + custom + list(built.omitted) == names  # declaration order, nothing lost silently
    assert len(built.notes) == len(built.omitted) > 0
    assert all("x" * 60 not in note for note in built.notes)  # notes name variables, not values
    assert all(v == "x" * 60 for k, v in sip.items() if k.startswith("X-MS-Custom-"))


def test_a_value_a_custom_header_cannot_carry_raw_is_omitted_with_a_note() -> None:
    context = {"AccountNumber": "a" * 250, "Note": "needs escaping: yes"}
    built = transfer.build(context, ("AccountNumber", "Note"), "+14255550123", "plain")
    assert built.omitted == ("Note",)
    assert "outside the ACS set" in built.notes[0]


def test_acs_and_teams_targets_get_voip_headers() -> None:
    context = {"Intent": "billing", "Priority": "7", "Long": "v" * 2000}
    built = transfer.build(context, ("Intent", "Priority", "Long"), "8:acs:abc_def", "hex")
    assert built.sip_headers is None
    assert built.voip_headers == {"Intent": "billing", "Priority": "7"}
    assert built.omitted == ("Long",) and "over 1024" in built.notes[0]


def test_an_empty_context_sends_no_headers() -> None:
    assert transfer.build({}, ORDER, "+14255550123", "hex") == transfer.TransferHeaders(None, None, None, (), ())


# --- uui_format: avaya-shared ---------------------------------------------------------------------

UCID = "00021000050946085673"  # the trgtech worked example: node 21, sequence 5, time 946085673
UCID_ITEM = "FA08" + "0015" + "0005" + "38641F29"  # its 8 bytes, big-endian, behind FA and LEN 8
ACCT_ITEM = "C807" + "414343543D3432"  # C8, 7 bytes, the ASCII of ACCT=42


def test_an_avaya_shared_queue_sends_the_items_as_shared_uui_and_the_rest_as_custom_headers() -> None:
    context = {"Intent": "billing", "UCID": UCID, "UserData": "ACCT=42"}
    built = transfer.build(context, ("Intent", "UCID", "UserData"), "+14255550140", "avaya-shared", {"C8": "UserData"})
    # Intent is no shared UUI item: it does not stop the items declared after it.
    assert built.sip_headers == {
        "User-To-User": "00" + UCID_ITEM + ACCT_ITEM + ";encoding=hex",
        "X-MS-Custom-Intent": "billing",
    }
    assert (built.uui_format, built.omitted, built.notes) == ("avaya-shared", (), ())
    decoded = uui.decode(built.sip_headers["User-To-User"], profile="avaya-shared", item_names={"C8": "UserData"})
    assert decoded.pairs == {"UCID": UCID, "UserData": "ACCT=42"}


def test_a_ucid_that_is_not_20_digits_travels_as_a_custom_header_not_as_an_item() -> None:
    context = {"UCID": "not-a-ucid", "ItemC8": "ACCT=42"}
    built = transfer.build(context, ("UCID", "ItemC8"), "+14255550140", "avaya-shared")
    assert built.sip_headers == {"User-To-User": "00" + ACCT_ITEM + ";encoding=hex", "X-MS-Custom-UCID": "not-a-ucid"}


def test_a_context_without_items_sends_no_user_to_user_under_avaya_shared() -> None:
    built = transfer.build({"Intent": "billing"}, ("Intent",), "+14255550140", "avaya-shared")
    assert built.sip_headers == {"X-MS-Custom-Intent": "billing"}
    assert built.uui_format is None


def test_items_that_do_not_fit_256_characters_follow_as_custom_headers_in_declaration_order() -> None:
    # Each 100-byte item takes 204 hex digits: the UCID and the first fit, the second does not.
    context = {"UCID": UCID, "ItemC8": "a" * 100, "ItemC9": "b" * 100}
    built = transfer.build(context, ("UCID", "ItemC8", "ItemC9"), "+14255550140", "avaya-shared")
    sip = built.sip_headers or {}
    assert uui.decode(sip["User-To-User"], profile="avaya-shared").pairs == {"UCID": UCID, "ItemC8": "a" * 100}
    assert sip["X-MS-Custom-ItemC9"] == "b" * 100
    assert built.omitted == ()
