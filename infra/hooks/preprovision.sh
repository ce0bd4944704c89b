#!/bin/sh
# azd preprovision hook: this azd environment's HANDOFF_CONTEXT_KEY, and the Event Grid filter's
# numbers derived from routing.yaml.
#
# The key signs the operationContext of every call the app answers and seals the sensitive context
# values in it (shared/core/sealing.py). It is generated once, here, and kept in the azd
# environment (.azure/<env>/.env, never committed), so every later `azd provision` passes the same
# key: a key that changed on each deployment would make the callbacks of calls in flight fail to
# verify. To rotate it, set "new,old" for a while, then "new" (docs/deploy.md).
set -eu

if [ -n "$(azd env get-value HANDOFF_CONTEXT_KEY 2>/dev/null || true)" ]; then
    echo "preprovision: HANDOFF_CONTEXT_KEY is set in this azd environment."
else
    key="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    azd env set HANDOFF_CONTEXT_KEY "$key" >/dev/null
    echo "preprovision: generated HANDOFF_CONTEXT_KEY for this azd environment (64 hex digits, kept in .azure/)."
fi

# The Event Grid filter admits the numbers routing.yaml's workstreams own, derived here on every
# provision, so a number added to routing.yaml is never left out of the filter (nor one removed left in).
if ! numbers="$(make -s numbers)"; then
    echo "preprovision: cannot read the numbers of routing.yaml (see above); fix it with: handoff check-config routing.yaml" >&2
    exit 1
fi
azd env set IVR_TRANSFER_NUMBERS "$numbers" >/dev/null
echo "preprovision: IVR_TRANSFER_NUMBERS=$numbers (from routing.yaml)"
