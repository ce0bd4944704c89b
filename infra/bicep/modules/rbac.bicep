// Role assignments in the app's resource group, each on the narrowest scope that works.

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Name of the dead-letter blob container in that storage account.')
param deadLetterContainerName string

@description('Name of the call records\' table in that storage account.')
param callsTableName string

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
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

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

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource callsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  parent: tableService
  name: callsTableName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Why: the Functions host uses AzureWebJobsStorage (blob only: host locks, keys, and the Flex
// deployment package) through this identity, and Storage Blob Data Owner is the role the Functions
// docs require for an identity-based AzureWebJobsStorage. Account scope because the host creates
// its own containers (azure-webjobs-hosts, azure-webjobs-secrets). No queue role: no trigger here
// uses queues; the table role below is the call records', on their table only.
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

// Why: the app keeps its call records in Table Storage (HANDOFF_STORE) through this identity, with
// shared keys off. Storage Table Data Contributor (read, insert, update, delete entities; no RBAC
// management) scoped to the call records' table only, not the account: the identity cannot read or
// write any other table. A table is a valid scope for a data role (Microsoft Learn, "Assign an Azure
// role for access to table data": /.../storageAccounts/<account>/tableServices/default/tables/<table>;
// the portal cannot assign it, ARM can). The table is created by modules/storage.bicep, so the app
// needs no permission to create tables.
resource callRecordsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(callsTable.id, functionPrincipalId, storageTableDataContributorRoleId)
  scope: callsTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
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
