"""The only places with I/O: Call Automation, callback JWTs, settings, dedupe state and telemetry.

Each adapter carries out what shared/core decides; shared/app.py composes them.
"""
