"""``python -m local.emulator``: run the emulator standalone and print the settings that point an app at it."""

from __future__ import annotations

import argparse
import signal
import time

from local.emulator.emulator import CallAutomationEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.emulator",
        description="Local Azure Communication Services Call Automation emulator.",
    )
    parser.add_argument("--access-key", help="base64 access key (random when omitted)")
    parser.add_argument("--resource-id", help="ACS immutable resource id, the callback JWT audience")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    args = parser.parse_args(argv)
    emulator = CallAutomationEmulator(access_key=args.access_key, resource_id=args.resource_id, verbose=args.verbose)
    # SIGTERM stops it like Ctrl-C does (both may arrive at any point, even during the banner).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with emulator:
            print(f"ACS_ENDPOINT={emulator.endpoint}")
            print(f"ACS_ACCESS_KEY={emulator.access_key}")
            print(f"ACS_RESOURCE_ID={emulator.resource_id}")
            print(f"HANDOFF_OPENID_CONFIG_URL={emulator.openid_config_url}")
            print("Ctrl-C to stop.", flush=True)
            seen = 0
            while True:
                time.sleep(0.5)
                actions = emulator.actions
                for action in actions[seen:]:
                    print(f"{action.method} {action.operation} -> {action.status}", flush=True)
                seen = len(actions)
    except KeyboardInterrupt:
        pass
    return 0
