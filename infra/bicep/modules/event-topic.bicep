// The Event Grid system topic of the ACS resource. ACS publishes IncomingCall through it; its
// system-assigned identity is what dead-letters undeliverable events into the app's storage.
// An Azure resource has at most one system topic: to reuse one that already exists on the ACS
// resource, deploy with its name (parameter systemTopicName of main.bicep).

@description('Name of the system topic.')
param name string

@description('Resource id of the ACS resource whose events the topic carries.')
param acsId string

@description('Tags applied to the system topic.')
param tags object

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  // ACS is a global resource, so its system topic is global too.
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: acsId
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
