# azd preprovision hook (Windows): make sure this azd environment has its HANDOFF_CONTEXT_KEY.
# Same as preprovision.sh: generated once and kept in the azd environment, so a redeployment does
# not change the key under calls in flight (their callbacks carry operation contexts signed with it).
$ErrorActionPreference = 'Stop'

$existing = ''
try { $existing = (azd env get-value HANDOFF_CONTEXT_KEY 2>$null) } catch { $existing = '' }
if ($existing) {
    Write-Output 'preprovision: HANDOFF_CONTEXT_KEY is set in this azd environment.'
    exit 0
}
$bytes = New-Object byte[] 32
[System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
$key = -join ($bytes | ForEach-Object { $_.ToString('x2') })
azd env set HANDOFF_CONTEXT_KEY $key | Out-Null
Write-Output 'preprovision: generated HANDOFF_CONTEXT_KEY for this azd environment (64 hex digits, kept in .azure/).'
