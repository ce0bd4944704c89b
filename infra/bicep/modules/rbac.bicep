// Role assignments in the app's resource group, each on the narrowest scope that works.

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Name of the dead-letter blob container in that storage account.')
param deadLetterContainerName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Principal (object) id of the function app\'s user-assigned managed identity.')
param functionPrincipalId string

@description('Principal (object) id of the ACS system topic\'s system-assigned identity.')
param systemTopicPrincipalId string

// Built-in role definition ids.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Why: the Functions host uses AzureWebJobsStorage (blob only: host locks, keys, and the Flex
// deployment package) through this identity, and Storage Blob Data Owner is the role the Functions
// docs require for an identity-based AzureWebJobsStorage. Account scope because the host creates
// its own containers (azure-webjobs-hosts, azure-webjobs-secrets). No queue or table role: no
// trigger here uses them.
resource hostStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionPrincipalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: Application Insights has local auth off, so the exporter authenticates with the managed
// identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and needs Monitoring Metrics Publisher,
// the ingestion role, on this component only.
resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, functionPrincipalId, monitoringMetricsPublisherRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Why: the event subscription dead-letters with the system topic's identity, which must write
// blobs. Storage Blob Data Contributor (write, no RBAC management) on the dead-letter container
// only, not the account: the topic cannot touch the host's or the deployment's blobs.
resource deadLetterRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, systemTopicPrincipalId, storageBlobDataContributorRoleId)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}
