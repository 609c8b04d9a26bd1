// User-assigned managed identity: the function app's only credential for Storage, Key Vault and App Insights.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Client (application) id of the identity, used in app settings.')
output clientId string = identity.properties.clientId

@description('Object (principal) id of the identity, used in role assignments.')
output principalId string = identity.properties.principalId
