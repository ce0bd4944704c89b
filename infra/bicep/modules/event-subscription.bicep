// The Event Grid subscription that delivers IncomingCall events for the IVR's transfer numbers to
// the function that answers them. Deployed only in the second pass (main.bicep parameter
// deployEventSubscription): Event Grid checks the destination when the subscription is created
// and answers "Destination endpoint not found" until the function code is deployed.

@description('Name of the event subscription.')
param name string

@description('Name of the ACS system topic (in this resource group) the subscription belongs to.')
param systemTopicName string

@description('Resource id of the function app (Microsoft.Web/sites).')
param functionAppId string

@description('Name of the Event Grid-triggered function, as registered in function_app.py.')
param functionName string

@description('The IVR transfer numbers, E.164 (for example +14255550100): only calls to these numbers are delivered. Event Grid allows at most 25 values.')
@minLength(1)
@maxLength(25)
param transferNumbers array

@description('Resource id of the storage account that receives dead-lettered events.')
param deadLetterStorageAccountId string

@description('Blob container that receives dead-lettered events.')
param deadLetterContainerName string

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: name
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        // One call per invocation: each event is acted on at once, and alone.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.IncomingCall'
      ]
      // Without a filter on the called number, a redirect to a number or user of the same ACS
      // resource raises a new IncomingCall that would come back here: a loop.
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.to.PhoneNumber.Value'
          values: transferNumbers
        }
      ]
    }
    // A call rings for 30 seconds: a late retry only answers a call that is gone. These are the
    // values ACS recommends for IncomingCall subscriptions.
    retryPolicy: {
      maxDeliveryAttempts: 2
      eventTimeToLiveInMinutes: 1
    }
    // Undelivered events land in blob storage, written with the system topic's own identity
    // (Storage Blob Data Contributor on the container, granted in rbac.bicep): no key, no SAS.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output id string = subscription.id
