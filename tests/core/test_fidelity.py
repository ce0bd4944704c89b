"""The context arrives as the IVR sent it: the same text, in every header form, for every type.

An IVR writes numbers with leading and trailing zeros, signs and long decimals, flags as yes/no/1,
and text with spaces, non-ASCII and percent signs. Rules compare typed values; everything that
leaves the app carries the text as received. Property: IVR context → IncomingCall → route →
transfer headers (every uui_format, PSTN and VoIP targets) → `handoff decode` → the same text.
"""

from __future__ import annotations

import copy
import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from shared import cli
from shared.core import config, events, routing, transfer, uui
from tests.conftest import DATA, load_json

EG = load_json(DATA / "incoming-call.eventgrid-schema.json")
TABLE = config.parse(
    """
queues: {agents: {action: answer, callback_url: "https://agents.example.com/api/callbacks"}}
workstreams:
  - name: w
    numbers: ["+14255550100"]
    context_variables:
      - {name: Ref, type: text}
      - {name: Amount, type: number}
      - {name: Flag, type: boolean}
    fallback_queue: agents
"""
)

digits = st.text("0123456789", min_size=1, max_size=6)
numbers = st.builds(
    lambda sign, whole, point, fraction: f"{sign}{whole}{point}{fraction if point else ''}",
    st.sampled_from(["", "-", "+"]),
    digits,  # leading zeros included: 007
    st.sampled_from(["", "."]),
    st.text("0123456789", max_size=5),  # trailing zeros included: 1.10
) | st.sampled_from(["12345678901234567890.1", "0.000", "-0", "1.0000000000000000001"])
flags = st.sampled_from(["true", "false", "TRUE", "Yes", "no", "1", "0"])
texts = (
    st.lists(
        st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from([" ", "%", ";", "=", "&", "%41", "%zz"]),
        min_size=1,
        max_size=8,
    )
    .map("".join)
    .filter(lambda t: t.strip(" \t") == t)
)  # the codec trims around items: edge whitespace is no value
contexts = st.fixed_dictionaries({}, optional={"Ref": texts, "Amount": numbers, "Flag": flags}).filter(bool)


def incoming(sent: dict[str, str], ivr_form: str) -> events.IncomingCall:
    ev = copy.deepcopy(EG)
    ev["data"]["to"] = {"phoneNumber": {"value": "+14255550100"}}
    ev["data"]["customContext"] = {"sipHeaders": {"User-To-User": uui.encode(sent, ivr_form, max_length=4096)}}
    return events.parse_events(ev)[0]


def decoded_with_the_command(value: str) -> dict[str, str]:
    out = io.StringIO()
    assert cli.main(["decode", value, "--json"], out=out, err=io.StringIO()) == 0
    return dict(json.loads(out.getvalue())["pairs"])


@settings(max_examples=150, deadline=None)
@given(sent=contexts, ivr_form=st.sampled_from(["plain", "hex"]))
def test_every_variable_reaches_the_transfer_target_as_the_text_the_ivr_sent(
    sent: dict[str, str], ivr_form: str
) -> None:
    if ivr_form == "hex" and any(";" in v for v in sent.values()):
        ivr_form = "plain"  # an IVR sending hex cannot put ';' in a value either
    d = routing.route(incoming(sent, ivr_form), TABLE)
    assert d.errors == () and dict(d.context_text) == sent
    for fmt in ("plain", "hex", "pd4"):
        built = transfer.build(d.context_text, ("Ref", "Amount", "Flag"), "+14255550123", fmt)
        sip = built.sip_headers or {}
        received = decoded_with_the_command(sip["User-To-User"]) if "User-To-User" in sip else {}
        received.update({k.removeprefix("X-MS-Custom-"): v for k, v in sip.items() if k.startswith("X-MS-Custom-")})
        assert received == sent and built.omitted == (), fmt
    voip = transfer.build(d.context_text, ("Ref", "Amount", "Flag"), "8:acs:resource_agent", "hex").voip_headers
    assert voip == sent


def test_the_numbers_the_issue_named_keep_their_text_and_compare_exactly() -> None:
    sent = {"Amount": "1.10", "Ref": "12345678901234567890.1"}
    d = routing.route(incoming(sent, "plain"), TABLE)
    assert d.context_text == sent
    assert str(d.context["Amount"]) == "1.10"  # a Decimal, not the float 1.1
    built = transfer.build(d.context_text, ("Ref", "Amount"), "+14255550123", "plain")
    assert decoded_with_the_command(built.sip_headers["User-To-User"]) == sent  # type: ignore[index]
