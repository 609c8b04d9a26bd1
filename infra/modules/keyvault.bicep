// Key Vault (RBAC authorization) holding the connector's secrets. The function app reads them through
// Key Vault references; nobody needs access policies or keys.
// A secret is written only when its parameter is non-empty, so a later deployment without the value keeps the
// secret that an operator set with `az keyvault secret set`.

@description('Name of the key vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the key vault.')
param location string

@description('Tags applied to the key vault and its secrets.')
param tags object

@description('Purge protection: a deleted vault or secret cannot be purged before the retention period ends. Cannot be turned off once on.')
param enablePurgeProtection bool

@secure()
@description('Client secret of the Entra app registration (BC_CLIENT_SECRET). Empty = leave the secret as it is.')
param bcClientSecret string = ''

@secure()
@description('Fernet key(s) that encrypt token caches at rest (TOKEN_ENCRYPTION_KEY). Empty = leave the secret as it is.')
param tokenEncryptionKey string = ''

var secretNames = {
  bcClientSecret: 'bc-client-secret'
  tokenEncryptionKey: 'token-encryption-key'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // The API accepts only true or an absent value here.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
  }
}

resource bcClientSecretEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(bcClientSecret)) {
  parent: vault
  name: secretNames.bcClientSecret
  tags: tags
  properties: {
    value: bcClientSecret
  }
}

resource tokenEncryptionKeyEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(tokenEncryptionKey)) {
  parent: vault
  name: secretNames.tokenEncryptionKey
  tags: tags
  properties: {
    value: tokenEncryptionKey
  }
}

@description('Name of the key vault.')
output name string = vault.name

@description('Versionless URI of the BC client secret (the app always reads the latest version).')
output bcClientSecretUri string = '${vault.properties.vaultUri}secrets/${secretNames.bcClientSecret}'

@description('Versionless URI of the token-encryption key (the app always reads the latest version).')
output tokenEncryptionKeyUri string = '${vault.properties.vaultUri}secrets/${secretNames.tokenEncryptionKey}'
