"""The pure core: everything Handoff decides, with no I/O, no Azure SDK and no environment.

acs (the ACS / Event Grid facts), events, uui, values, config, context, routing, decision,
transfer, redaction and callback_flow. It imports nothing of shared.adapters or shared.app
(tests/core/test_layers.py checks it), so it is fast to test and easy to reason about.
"""
