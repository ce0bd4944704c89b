# azd preprovision hook (Windows): this azd environment's HANDOFF_CONTEXT_KEY, and the Event Grid
# filter's numbers derived from routing.yaml.
# Same as preprovision.sh: generated once and kept in the azd environment, so a redeployment does
# not change the key under calls in flight (their callbacks carry operation contexts signed with it).
$ErrorActionPreference = 'Stop'

$existing = ''
try { $existing = (azd env get-value HANDOFF_CONTEXT_KEY 2>$null) } catch { $existing = '' }
if ($existing) {
    Write-Output 'preprovision: HANDOFF_CONTEXT_KEY is set in this azd environment.'
} else {
    $bytes = New-Object byte[] 32
    [System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
    $key = -join ($bytes | ForEach-Object { $_.ToString('x2') })
    azd env set HANDOFF_CONTEXT_KEY $key | Out-Null
    Write-Output 'preprovision: generated HANDOFF_CONTEXT_KEY for this azd environment (64 hex digits, kept in .azure/).'
}

# The Event Grid filter admits the numbers routing.yaml's workstreams own, derived on every provision.
$numbers = (make -s numbers)
if ($LASTEXITCODE -ne 0 -or -not $numbers) {
    Write-Error 'preprovision: cannot read the numbers of routing.yaml; fix it with: handoff check-config routing.yaml'
    exit 1
}
azd env set IVR_TRANSFER_NUMBERS $numbers | Out-Null
Write-Output "preprovision: IVR_TRANSFER_NUMBERS=$numbers (from routing.yaml)"
