"""Handoff's own package (not the handbook folder beside the repository).

core/ decides (pure), adapters/ do the I/O, app.py composes them for the triggers in functions/,
and cli.py is the ``handoff`` command.
"""
