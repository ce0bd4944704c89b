// The Flex Consumption plan and the Linux Python function app, running as the user-assigned
// managed identity, with the one and only list of its app settings.

@description('Name of the function app; also the first label of its default host name.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region of the plan and the app; must offer Flex Consumption.')
param location string

@description('Tags applied to the plan and the app.')
param tags object

@description('azd service name from azure.yaml; azd finds the app to deploy to by this tag.')
param serviceName string

@description('Python version of the Functions runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string

@description('Most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory of each instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int

@description('Name of the function kept warm by always-ready instances (the IncomingCall handler).')
param alwaysReadyFunctionName string

@description('Always-ready instances for that function; 0 lets it scale to zero (a cold start can then miss a ringing call).')
@minValue(0)
@maxValue(10)
param alwaysReadyInstanceCount int

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Name of the storage account for AzureWebJobsStorage and the deployment package.')
param storageAccountName string

@description('Blob container (in that account) that holds the deployment package.')
param deploymentContainerName string

@description('Name of the Application Insights component the app reports to.')
param applicationInsightsName string

@description('Call Automation endpoint of the ACS resource.')
param acsEndpoint string

@description('Immutable resource id (GUID) of the ACS resource: the audience of callback JWTs.')
param acsImmutableResourceId string

@description('Time budget in seconds for one Call Automation action including retries (HANDOFF_DEADLINE_SECONDS).')
param deadlineSeconds string

@description('Table of the call records in that storage account (HANDOFF_STORE_TABLE).')
param callsTableName string

@description('Hours a call record is kept before the sweep deletes it (HANDOFF_CONTEXT_TTL_HOURS).')
param contextTtlHours string

@description('Seconds a call answered for a transfer may wait for it before the sweep steps in (HANDOFF_TRANSFER_TIMEOUT_SECONDS).')
param transferTimeoutSeconds string

@secure()
@description('Key of the keyed hashes of sensitive values in telemetry (HANDOFF_REDACTION_KEY); empty: masked.')
param redactionKey string

@secure()
@description('Key that signs and seals the operationContext of the calls this app answers (HANDOFF_CONTEXT_KEY).')
param contextKey string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // A call rings for 30 seconds and Flex scales to zero when idle: keep the IncomingCall
        // function warm so a cold start (imports, identity, first Event Grid delivery) cannot
        // eat the ringing time.
        alwaysReady: alwaysReadyInstanceCount > 0 ? [
          {
            name: 'function:${alwaysReadyFunctionName}'
            instanceCount: alwaysReadyInstanceCount
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Call Automation posts mid-call events here (the HTTP trigger at route 'callbacks').
var callbackUrl = 'https://${site.properties.defaultHostName}/api/callbacks'

// App settings, in two lists kept apart on purpose. The config resource below replaces the whole
// collection on every deployment, so a setting missing here is removed from the app; and
// tests/infra/test_infra.py checks each list against its source of truth.

// 1. Read by the Functions host and platform, not by Handoff's code: the host's storage, through
//    the user-assigned identity. (Flex Consumption takes the runtime from functionAppConfig, not
//    from settings.)
var platformAppSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
}

// 2. Read by Handoff's code: exactly the settings marked in_azure in shared/adapters/settings.py.
//    (APPLICATIONINSIGHTS_* are read by the code's Azure Monitor exporter; the host reads them too.)
//    HANDOFF_STORE is the account's table endpoint as Azure reports it, trailing slash included
//    (https://<account>.table.core.windows.net/): azure-data-tables strips it (TableClient parses
//    endpoint.rstrip('/'); tests/infra/test_infra.py builds a client both ways and compares the
//    URLs). The app signs in to it as AZURE_CLIENT_ID's identity, which has Storage Table Data
//    Contributor on HANDOFF_STORE_TABLE only (modules/rbac.bicep); no connection string, shared
//    keys are off.
var codeAppSettings = {
  HANDOFF_CONFIG: 'routing.yaml'
  ACS_ENDPOINT: acsEndpoint
  AZURE_CLIENT_ID: identityClientId
  HANDOFF_CALLBACK_URL: callbackUrl
  ACS_RESOURCE_ID: acsImmutableResourceId
  HANDOFF_DEADLINE_SECONDS: deadlineSeconds
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  HANDOFF_REDACTION_KEY: redactionKey
  HANDOFF_CONTEXT_KEY: contextKey
  HANDOFF_STORE: storage.properties.primaryEndpoints.table
  HANDOFF_STORE_TABLE: callsTableName
  HANDOFF_CONTEXT_TTL_HOURS: contextTtlHours
  HANDOFF_TRANSFER_TIMEOUT_SECONDS: transferTimeoutSeconds
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(platformAppSettings, codeAppSettings)
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output callbackUrl string = callbackUrl
