#!/bin/sh
# azd postdeploy hook: the second pass, which creates the Event Grid subscription from ACS's
# system topic to the incoming_call function.
#
# Why a second pass: Event Grid validates an AzureFunction destination when the subscription is
# created and fails with "Destination endpoint not found" until the function's code is deployed,
# which azd does after provisioning. So the first `azd provision` runs with
# deployEventSubscription=false, `azd deploy` publishes the code, and this hook re-provisions with
# DEPLOY_EVENT_SUBSCRIPTION=true.
#
# Why `azd provision` rather than `az deployment group create`: it re-runs the one template with
# the parameters azd already resolves from this environment (main.parameters.json), under the
# same azd login, so the subscription is declared in main.bicep like everything else and nothing
# is duplicated here; ARM deploys incrementally, so the rest is left as it is. The flag stays true
# in the azd environment: later `azd up` runs create or update the subscription in their first
# step, since the function then exists. (`azd down` sets it back to false: see azure.yaml.)
set -eu

if [ "${DEPLOY_EVENT_SUBSCRIPTION:-false}" = "true" ]; then
    echo "postdeploy: the Event Grid subscription was provisioned with this deployment; nothing to do."
    exit 0
fi

numbers="$(printf '%s' "${IVR_TRANSFER_NUMBERS:-}" | tr -d ' ')"
if [ -z "$numbers" ]; then
    echo "postdeploy: IVR_TRANSFER_NUMBERS is not set, so no call would reach the function." >&2
    echo "  Set the IVR's transfer numbers (E.164, comma-separated), then run 'azd provision':" >&2
    echo "    azd env set IVR_TRANSFER_NUMBERS '+14255550100,+14255550101'" >&2
    echo "    azd env set DEPLOY_EVENT_SUBSCRIPTION true" >&2
    exit 1
fi

count=0
old_ifs="$IFS"
IFS=','
for number in $numbers; do
    count=$((count + 1))
    if ! printf '%s' "$number" | grep -Eq '^\+[1-9][0-9]{6,14}$'; then
        echo "postdeploy: '$number' in IVR_TRANSFER_NUMBERS is not an E.164 number like +14255550100." >&2
        exit 1
    fi
done
IFS="$old_ifs"
if [ "$count" -gt 25 ]; then
    echo "postdeploy: $count numbers; an Event Grid advanced filter takes at most 25 values." >&2
    exit 1
fi

echo "postdeploy: second pass: Event Grid subscription for $count number(s) -> ${INCOMING_CALL_FUNCTION_NAME:-incoming_call} on ${AZURE_FUNCTION_APP_NAME:-the function app}"
azd env set DEPLOY_EVENT_SUBSCRIPTION true
# Also in this process's environment: azd hands hooks the environment's values as variables, and
# the nested azd must not see a stale 'false' from there.
DEPLOY_EVENT_SUBSCRIPTION=true
export DEPLOY_EVENT_SUBSCRIPTION
if ! azd provision --no-prompt || [ "$(azd env get-value EVENT_SUBSCRIPTION_DEPLOYED)" != "true" ]; then
    # Leave the environment as the first pass left it, so the next `azd up` does not try the
    # subscription before its code step.
    azd env set DEPLOY_EVENT_SUBSCRIPTION false
    echo "postdeploy: the second pass failed; see docs/deploy.md (\"If the second pass fails\")." >&2
    exit 1
fi
