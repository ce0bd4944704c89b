// The operations workbook, bound to the app's Application Insights. Its content lives in
// ../workbook.json (edited as plain workbook JSON, loaded here at build time).

@description('Display name of the workbook in the portal.')
param displayName string

@description('Azure region of the workbook.')
param location string

@description('Tags applied to the workbook.')
param tags object

@description('Resource id of the Application Insights component the workbook reads.')
param applicationInsightsId string

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; derive a stable one so redeploys update it in place.
  name: guid(applicationInsightsId, 'handoff-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: loadTextContent('../workbook.json')
  }
}

output id string = workbook.id
