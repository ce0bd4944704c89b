# azd postdeploy hook (Windows): the second pass, which creates the Event Grid subscription from ACS's
# system topic to the incoming_call function.
#
# A port of postdeploy.sh, step for step (read it for why there is a second pass and why it runs
# `azd provision`); tests/infra/test_infra.py checks that both run the same azd commands in the
# same order and apply the same number checks.
$ErrorActionPreference = 'Stop'

function Fail([string[]] $Lines) {
    foreach ($line in $Lines) { [Console]::Error.WriteLine($line) }
    exit 1
}

# `set -e` in postdeploy.sh: a failing azd command stops the hook with its status.
function Invoke-Azd {
    azd @args
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

if ("$env:DEPLOY_EVENT_SUBSCRIPTION" -eq 'true') {
    Write-Output 'postdeploy: the Event Grid subscription was provisioned with this deployment; nothing to do.'
    exit 0
}

$numbers = "$env:IVR_TRANSFER_NUMBERS" -replace ' ', ''
if (-not $numbers) {
    Fail @(
        'postdeploy: IVR_TRANSFER_NUMBERS is not set, so no call would reach the function.',
        "  Set the IVR's transfer numbers (E.164, comma-separated), then run 'azd provision':",
        "    azd env set IVR_TRANSFER_NUMBERS '+14255550100,+14255550101'",
        '    azd env set DEPLOY_EVENT_SUBSCRIPTION true'
    )
}

# Split like the shell's IFS=',': one trailing comma ends the list rather than adding an empty number.
$list = @($numbers.Split(','))
if ($list.Count -gt 1 -and $list[-1] -eq '') { $list = $list[0..($list.Count - 2)] }
$count = 0
foreach ($number in $list) {
    $count += 1
    if ($number -cnotmatch '^\+[1-9][0-9]{6,14}$') {
        Fail @("postdeploy: '$number' in IVR_TRANSFER_NUMBERS is not an E.164 number like +14255550100.")
    }
}
if ($count -gt 25) {
    Fail @("postdeploy: $count numbers; an Event Grid advanced filter takes at most 25 values.")
}

$functionName = if ($env:INCOMING_CALL_FUNCTION_NAME) { $env:INCOMING_CALL_FUNCTION_NAME } else { 'incoming_call' }
$app = if ($env:AZURE_FUNCTION_APP_NAME) { $env:AZURE_FUNCTION_APP_NAME } else { 'the function app' }
Write-Output "postdeploy: second pass: Event Grid subscription for $count number(s) -> $functionName on $app"
Invoke-Azd env set DEPLOY_EVENT_SUBSCRIPTION true
# Also in this process's environment: azd hands hooks the environment's values as variables, and
# the nested azd must not see a stale 'false' from there.
$env:DEPLOY_EVENT_SUBSCRIPTION = 'true'
azd provision --no-prompt
$provisioned = $LASTEXITCODE -eq 0
if ($provisioned) { $provisioned = (azd env get-value EVENT_SUBSCRIPTION_DEPLOYED) -eq 'true' }
if (-not $provisioned) {
    # Leave the environment as the first pass left it, so the next `azd up` does not try the
    # subscription before its code step.
    Invoke-Azd env set DEPLOY_EVENT_SUBSCRIPTION false
    Fail @('postdeploy: the second pass failed; see docs/deploy.md ("If the second pass fails").')
}
