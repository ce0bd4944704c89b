"""``python -m local.emulator``: see :func:`local.emulator.cli.main`."""

from local.emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
