// Handoff on Azure: an Event Grid-triggered Python function on Flex Consumption that takes the
// calls an IVR transfers into Azure Communication Services over direct routing.
//
// Two passes (docs/deploy.md):
//   1. deployEventSubscription=false: everything but the Event Grid subscription; azd then
//      deploys the code.
//   2. deployEventSubscription=true (the azd postdeploy hook, infra/hooks/postdeploy.sh): the
//      subscription, which Event Grid only accepts once the function exists.
//
// Written in the Bicep dialect checkov parses (no typed arrays, nullable types, lambdas,
// imports, user-defined functions or types): `make infra-check` fails on anything it skips.

targetScope = 'subscription'

@description('azd environment name; names the resource group and seeds the unique resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of the resources; it must offer the Flex Consumption plan.')
@minLength(1)
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to deploy into; empty means rg-<environmentName>.')
param resourceGroupName string = ''

@description('Python version of the Functions runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('The IVR transfer numbers, comma-separated E.164 (for example \'+14255550100,+14255550101\'): the event subscription delivers only calls to these numbers. Needed for the second pass; at most 25.')
param ivrTransferNumbers string = ''

@description('Second pass: create the Event Grid subscription to the incoming_call function. Leave false until the function code is deployed.')
param deployEventSubscription bool = false

@description('Name of an existing ACS resource to use; empty creates a new one.')
param existingAcsName string = ''

@description('Resource group of that existing ACS resource; empty means the app\'s resource group.')
param existingAcsResourceGroupName string = ''

@description('Where a new ACS resource stores data at rest (for example \'United States\' or \'Europe\').')
param acsDataLocation string = 'United States'

@description('Name of the ACS resource\'s Event Grid system topic. An Azure resource has at most one system topic: if the existing ACS resource already has one, give its name; empty creates evgt-<token>.')
param systemTopicName string = ''

@description('Always-ready instances for the incoming_call function (billed while idle, see docs/deploy.md); 0 lets it scale to zero.')
@minValue(0)
@maxValue(10)
param alwaysReadyInstanceCount int = 1

@description('Most instances the function app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each function app instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('HANDOFF_DEADLINE_SECONDS: time budget in seconds for one Call Automation action including retries (a call rings 30 s; the app accepts (0, 25]).')
param deadlineSeconds string = '10'

@description('HANDOFF_STORE_TABLE: the table of the call records, created in the app\'s storage account; 3 to 63 letters and digits, starting with a letter.')
@minLength(3)
@maxLength(63)
param callsTableName string = 'calls'

@description('HANDOFF_CONTEXT_TTL_HOURS: hours a call record (the call\'s context) is kept before the app\'s sweep deletes it (the app accepts (0, 8760]).')
param contextTtlHours string = '24'

@description('HANDOFF_TRANSFER_TIMEOUT_SECONDS: seconds a call answered for a transfer may wait for it before the sweep sends it to its workstream\'s fallback queue or hangs up (the app accepts (0, 3600]).')
param transferTimeoutSeconds string = '15'

@secure()
@description('HANDOFF_REDACTION_KEY: secret key (16+ characters) for the keyed hashes that replace sensitive context values in telemetry (docs/operate.md); empty: they are masked.')
param redactionKey string = ''

@secure()
@minLength(32)
@description('HANDOFF_CONTEXT_KEY: secret key (32+ characters) that signs the operationContext of every call this app answers and seals its sensitive values; the azd preprovision hook generates it once per environment.')
param contextKey string

@description('Days a dead-lettered IncomingCall event (it holds caller numbers) is kept in storage.')
@minValue(1)
@maxValue(365)
param deadLetterRetentionDays int = 30

@description('Days Log Analytics keeps the telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// The Event Grid-triggered function of function_app.py: the subscription's destination and the
// always-ready entry both name it (tests/infra/test_infra.py checks it against function_app.py).
var incomingCallFunctionName = 'incoming_call'
// The azd service in azure.yaml.
var serviceName = 'handoff'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-handoff-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var deadLetterContainerName = 'incoming-call-deadletter'
var createAcs = empty(existingAcsName)
var acsName = createAcs ? 'acs-handoff-${resourceToken}' : existingAcsName
var appResourceGroupName = !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
var acsResourceGroupName = createAcs || empty(existingAcsResourceGroupName) ? appResourceGroupName : existingAcsResourceGroupName
var topicName = !empty(systemTopicName) ? systemTopicName : 'evgt-acs-${resourceToken}'
var transferNumbers = empty(ivrTransferNumbers) ? [] : split(replace(ivrTransferNumbers, ' ', ''), ',')

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: appResourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-handoff-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'sthandoff${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    deadLetterRetentionDays: deadLetterRetentionDays
    callsTableName: callsTableName
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-handoff-${resourceToken}'
    applicationInsightsName: 'appi-handoff-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    displayName: 'Handoff operations (${environmentName})'
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module acs 'modules/acs.bicep' = {
  name: 'acs-${resourceToken}'
  scope: resourceGroup(acsResourceGroupName)
  params: {
    name: acsName
    createNew: createAcs
    dataLocation: acsDataLocation
    tags: tags
  }
  dependsOn: [
    rg
  ]
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-handoff-${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyFunctionName: incomingCallFunctionName
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    acsEndpoint: acs.outputs.endpoint
    acsImmutableResourceId: acs.outputs.immutableResourceId
    deadlineSeconds: deadlineSeconds
    callsTableName: storage.outputs.callsTableName
    contextTtlHours: contextTtlHours
    transferTimeoutSeconds: transferTimeoutSeconds
    redactionKey: redactionKey
    contextKey: contextKey
  }
}

module eventTopic 'modules/event-topic.bicep' = {
  name: 'event-topic-${resourceToken}'
  scope: resourceGroup(acsResourceGroupName)
  params: {
    name: topicName
    acsId: acs.outputs.id
    tags: tags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    callsTableName: storage.outputs.callsTableName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    functionPrincipalId: identity.outputs.principalId
    systemTopicPrincipalId: eventTopic.outputs.principalId
  }
}

module acsRbac 'modules/acs-rbac.bicep' = {
  name: 'acs-rbac-${resourceToken}'
  scope: resourceGroup(acsResourceGroupName)
  params: {
    acsName: acs.outputs.name
    principalId: identity.outputs.principalId
  }
}

// Modules deployed to the ACS resource's resource group carry the environment's token in their
// deployment names, so environments sharing one ACS resource do not overwrite each other's records.

// Second pass only: Event Grid validates the destination function when the subscription is made.
module incomingCallSubscription 'modules/event-subscription.bicep' = if (deployEventSubscription) {
  name: 'event-subscription-${resourceToken}'
  scope: resourceGroup(acsResourceGroupName)
  params: {
    name: 'incoming-call-${resourceToken}'
    systemTopicName: eventTopic.outputs.name
    functionAppId: functionApp.outputs.id
    functionName: incomingCallFunctionName
    transferNumbers: transferNumbers
    deadLetterStorageAccountId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
  dependsOn: [
    rbac
  ]
}

// Outputs: azd stores them in the environment (.azure/<env>/.env) and hands them to hooks.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOST string = functionApp.outputs.defaultHostName
output HANDOFF_CALLBACK_URL string = functionApp.outputs.callbackUrl
output INCOMING_CALL_FUNCTION_NAME string = incomingCallFunctionName
output ACS_NAME string = acs.outputs.name
output ACS_RESOURCE_GROUP string = acsResourceGroupName
output ACS_ENDPOINT string = acs.outputs.endpoint
output EVENT_GRID_SYSTEM_TOPIC_NAME string = eventTopic.outputs.name
output EVENT_SUBSCRIPTION_DEPLOYED bool = deployEventSubscription
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output DEAD_LETTER_CONTAINER_NAME string = storage.outputs.deadLetterContainerName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
