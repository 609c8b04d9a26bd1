// Key Vault (RBAC authorization) holding the connector's secrets. The function app reads them through
// Key Vault references; nobody needs access policies or keys. Its audit log goes to Log Analytics.
// A secret is written only when its value is non-empty, so a later deployment without the value keeps the
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
@description('Secret app settings by name (BC_CLIENT_SECRET, TOKEN_ENCRYPTION_KEY, EMEA__BC_CLIENT_SECRET, ...), one key per name in secretSettingNames. An empty value leaves the vault\'s secret as it is.')
param secrets object

@description('Names of the secret app settings (the keys of secrets); each becomes a Key Vault reference.')
param secretSettingNames array

@description('Optional. Deny public networks except allowedSubnetIds (service endpoint Microsoft.KeyVault), allowedIpRanges and trusted Azure services.')
param restrictNetworkAccess bool = false

@description('Optional. Subnet resource ids let through when restrictNetworkAccess is on.')
param allowedSubnetIds array = []

@description('Optional. Public IP ranges (CIDR) let through when restrictNetworkAccess is on.')
param allowedIpRanges array = []

@description('Resource id of the Log Analytics workspace that receives the audit log and metrics.')
param logAnalyticsWorkspaceId string

// A setting's secret is its name in lower case with hyphens: BC_CLIENT_SECRET -> bc-client-secret,
// EMEA__BC_CLIENT_SECRET -> emea--bc-client-secret.
var secretNames = toObject(secretSettingNames, setting => setting, setting => toLower(replace(setting, '_', '-')))

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
    publicNetworkAccess: 'Enabled' // with restricted rules, only what networkAcls lets through
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: restrictNetworkAccess ? 'Deny' : 'Allow'
      virtualNetworkRules: [for subnetId in (restrictNetworkAccess ? allowedSubnetIds : []): {
        id: subnetId
        ignoreMissingVnetServiceEndpoint: false
      }]
      ipRules: [for range in (restrictNetworkAccess ? allowedIpRanges : []): {
        value: range
      }]
    }
  }
}

resource entries 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for setting in filter(secretSettingNames, setting => !empty(secrets[setting])): {
    parent: vault
    name: secretNames[setting]
    tags: tags
    properties: {
      value: secrets[setting]
    }
  }
]

// Who read or changed which secret (AuditEvent), to Log Analytics.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

@description('Name of the key vault.')
output name string = vault.name

@description('App settings that reference the secrets, by setting name: versionless URIs, so the app always reads the latest version.')
output references object = toObject(secretSettingNames, setting => setting, setting => '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${secretNames[setting]})')
