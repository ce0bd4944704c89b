// The Azure Communication Services resource: a new one, or an existing one (for example the
// resource the SBC's direct routing is already configured on) found by name in this resource group.

@description('Name of the ACS resource: the one to create when createNew is true, otherwise an existing one in this resource group.')
param name string

@description('True to create the ACS resource, false to use an existing one of that name.')
param createNew bool

@description('Where ACS stores data at rest (for example \'United States\' or \'Europe\'). Used only when creating.')
param dataLocation string

@description('Tags applied to a created ACS resource.')
param tags object

resource created 'Microsoft.Communication/communicationServices@2023-04-01' = if (createNew) {
  name: name
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource found 'Microsoft.Communication/communicationServices@2023-04-01' existing = if (!createNew) {
  name: name
}

output id string = createNew ? created.id : found.id
output name string = name
// Call Automation endpoint, as the portal shows it ('https://<name>.<geo>.communication.azure.com/').
output endpoint string = createNew ? 'https://${created.properties.hostName}/' : 'https://${found.properties.hostName}/'
// The audience ('aud') of the JWTs Call Automation signs its callbacks with.
output immutableResourceId string = createNew ? created.properties.immutableResourceId : found.properties.immutableResourceId
