"""Local runs stay on loopback whatever proxy the developer's shell names.

requests and urllib take ``HTTP_PROXY``/``HTTPS_PROXY`` from the environment, and a corporate shell
often sets one without ``NO_PROXY`` covering 127.0.0.1: make run's replay, the tests' and the
benches' own requests to the local host would then go to that proxy. It cannot serve them (its
127.0.0.1 is its own machine), and nothing of a local run may leave this one. ``make run``,
``make test`` and ``make bench`` call :func:`direct` first; the processes they start inherit it.
(The app's own clients never proxy a loopback endpoint: shared/adapters/transport.py.)
"""

from __future__ import annotations

import os

#: What NO_PROXY must name so that every loopback request goes direct (requests and urllib both
#: match these names exactly; requests also takes CIDR blocks, urllib does not).
LOOPBACK = ("127.0.0.1", "localhost", "::1")


#: The variables that name a proxy for requests and urllib (either case).
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def direct() -> None:
    """Add the loopback names to NO_PROXY and no_proxy (both spellings are read), keeping what is
    there, when a proxy is named. Without one the environment is left as it is: a NO_PROXY that
    matches lets requests skip its per-request scan of the environment, which would make the
    benchmarks' SDK-default client cheaper than it is where no NO_PROXY is set (as in Azure)."""
    if not any(os.environ.get(name) or os.environ.get(name.lower()) for name in PROXY_VARIABLES):
        return
    for name in ("NO_PROXY", "no_proxy"):
        present = [host.strip() for host in os.environ.get(name, "").split(",") if host.strip()]
        os.environ[name] = ",".join([*present, *(host for host in LOOPBACK if host not in present)])
