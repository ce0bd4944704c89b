#!/bin/sh
# azd preprovision hook: make sure this azd environment has its HANDOFF_CONTEXT_KEY.
#
# The key signs the operationContext of every call the app answers and seals the sensitive context
# values in it (shared/core/sealing.py). It is generated once, here, and kept in the azd
# environment (.azure/<env>/.env, never committed), so every later `azd provision` passes the same
# key: a key that changed on each deployment would make the callbacks of calls in flight fail to
# verify. To rotate it, set "new,old" for a while, then "new" (docs/deploy.md).
set -eu

if [ -n "$(azd env get-value HANDOFF_CONTEXT_KEY 2>/dev/null || true)" ]; then
    echo "preprovision: HANDOFF_CONTEXT_KEY is set in this azd environment."
    exit 0
fi
key="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
azd env set HANDOFF_CONTEXT_KEY "$key" >/dev/null
echo "preprovision: generated HANDOFF_CONTEXT_KEY for this azd environment (64 hex digits, kept in .azure/)."
