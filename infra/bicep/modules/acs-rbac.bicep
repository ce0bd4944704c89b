// The one role assignment on the ACS resource, deployed in the ACS resource's resource group
// (which may differ from the app's when an existing ACS resource is used).

@description('Name of the ACS resource in this resource group.')
param acsName string

@description('Principal (object) id of the function app\'s user-assigned managed identity.')
param principalId string

// Communication and Email Service Owner.
var communicationServiceOwnerRoleId = '09976791-48a7-449e-bb21-39d1a415f350'

resource acs 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: acsName
}

// Why: Call Automation with Entra ID (answer, redirect, transfer, reject) authorizes the caller
// through an Azure RBAC role on the ACS resource, and this is the built-in role used for it in
// practice; no narrower built-in role for Call Automation is documented. Scoped to this one ACS
// resource only. Verify on the first deployment (docs/deploy.md).
resource callAutomationRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(acs.id, principalId, communicationServiceOwnerRoleId)
  scope: acs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', communicationServiceOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
