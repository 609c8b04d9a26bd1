// bc-connector on Azure: one resource group with a Flex Consumption function app running as a user-assigned
// identity, its storage account, a key vault for the secrets, and Log Analytics + Application Insights.
// Deploy with `azd up`, or `az deployment sub create` (see docs/deploy.md).
targetScope = 'subscription'

@description('Name of the environment (azd environment name); prefixes the resource group and resource names.')
@minLength(1)
@maxLength(40)
param environmentName string

@description('Azure region of every resource; it must offer the Flex Consumption plan.')
@minLength(1)
param location string

@description('Object id of the user or service principal running the deployment. It gets Key Vault Secrets Officer and Storage Queue Data Contributor; empty = none.')
param principalId string = ''

@description('BC_TENANT: Entra tenant of Business Central, as a domain (contoso.com) or GUID.')
@minLength(1)
param bcTenant string

@description('BC_CLIENT_ID: application (client) id of the Entra app registration.')
@minLength(1)
param bcClientId string

@description('BC_ENVIRONMENT: Business Central environment name.')
param bcEnvironment string = 'production'

@description('BC_GRANT_TYPE: authorization_code (a user signs in once) or client_credentials (service-to-service).')
@allowed([
  'authorization_code'
  'client_credentials'
])
param bcGrantType string = 'authorization_code'

@description('BC_COMPANY: company id or name; empty = the first company discovered.')
param bcCompany string = ''

@secure()
@description('BC_CLIENT_SECRET, stored in Key Vault. Empty = keep the secret already in the vault (or set it later with az keyvault secret set).')
param bcClientSecret string = ''

@secure()
@description('TOKEN_ENCRYPTION_KEY (Fernet key, urlsafe base64 of 32 bytes), stored in Key Vault. Empty = keep the secret already in the vault.')
param tokenEncryptionKey string = ''

@description('Connector app settings to add or override by name, e.g. {"BC_CONNECTIONS": "default,emea", "EMEA__BC_TENANT": "..."}; connector/settings.py documents each. The bc* parameters and the Key Vault references win over these.')
param connectorSettings object = {}

@description('Most instances the app scales out to. 40 is the lowest value Flex Consumption accepts. Business Central processes 5 requests at a time per user or service principal and queues the rest (429 beyond 100), so more instances do not mean more BC throughput: BC_MAX_CONCURRENCY limits each instance and the client backs off on 429/503.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Instances kept warm for the HTTP functions. BC gives a webhook handshake about 5 s, which a cold start can miss; 0 = scale to zero.')
@minValue(0)
param alwaysReadyHttpInstances int = 0

@description('Turn on Key Vault purge protection (recommended outside throwaway environments; cannot be turned off later).')
param enableKeyVaultPurgeProtection bool = true

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// uniqueString gives 13 lower-case letters and digits, stable for one subscription, environment and region.
var resourceToken = uniqueString(subscription().id, environmentName, location)
var tags = {
  'azd-env-name': environmentName
}

// Storage account and key vault names allow 24 characters, so they carry only the token.
var names = {
  resourceGroup: 'rg-${environmentName}'
  identity: 'id-${environmentName}-${resourceToken}'
  storage: 'st${resourceToken}'
  keyVault: 'kv-${resourceToken}'
  logAnalytics: 'log-${environmentName}-${resourceToken}'
  applicationInsights: 'appi-${environmentName}-${resourceToken}'
  plan: 'plan-${environmentName}-${resourceToken}'
  functionApp: 'func-${environmentName}-${resourceToken}'
}

// Must equal QUEUE_NAMES, TABLE_NAMES and BLOB_CONTAINERS in connector/settings.py (tests/infra checks this).
var queueNames = [
  'sales-orders'
  'sales-orders-poison'
  'sales-order-results'
  'bc-items'
  'bc-sales-shipments'
  'bc-sales-invoices'
  'bc-notifications'
  'bc-notifications-poison'
  'bc-item-pulls'
  'bc-item-pulls-poison'
]
var tableNames = [
  'bctokens'
  'bcauthflows'
  'bcconnections'
  'bcsubscriptions'
  'bccursors'
  'bcdedupe'
  'bcorders'
  'bcleases'
]
var blobContainerNames = [
  'bc-event-payloads'
]
var deploymentContainerName = 'app-package'

// Defaults of the connector's settings, as in connector/settings.py (tests/infra checks this). The BC_* connection
// settings and the secrets have their own parameters; AzureWebJobsStorage is replaced by the identity-based
// AzureWebJobsStorage__* settings in modules/function-app.bicep.
var connectorSettingDefaults = {
  BC_CONNECTIONS: 'default'
  PULL_ITEM_VARIANTS: 'true'
  PULL_SALES_SHIPMENT_LINES: 'true'
  PULL_SALES_INVOICE_LINES: 'true'
  // The connector's public-cloud default; another cloud overrides it through connectorSettings.
  #disable-next-line no-hardcoded-env-urls
  ENTRA_AUTHORITY_HOST: 'https://login.microsoftonline.com'
  BC_API_HOST: 'https://api.businesscentral.dynamics.com'
  TLS_CA_BUNDLE: ''
  PUBLIC_BASE_URL: ''
  ITEM_PULL_SCHEDULE: '0 */15 * * * *'
  SUBSCRIPTION_RENEWAL_SCHEDULE: '0 7 * * * *'
  SWEEP_SCHEDULE: '0 */30 * * * *'
  SWEEP_MAX_SECONDS: '480'
  SUBSCRIPTION_RENEW_BEFORE_HOURS: '36'
  ITEM_PULL_PAGE_SIZE: '1000'
  ITEM_PULL_MAX_SECONDS: '480'
  CURSOR_OVERLAP_SECONDS: '60'
  EVENT_PUBLISH_CONCURRENCY: '16'
  EVENT_MAX_INLINE_BYTES: '60000'
  DEDUPE_TTL_DAYS: '14'
  BC_MAX_CONCURRENCY: '5'
  BC_MAX_REQUESTS_PER_5_MIN: '6000'
  BC_MAX_RETRIES: '6'
  BC_BACKOFF_SECONDS: '1.0'
  BC_BACKOFF_MAX_SECONDS: '60'
  BC_TIMEOUT_SECONDS: '100'
  SALES_ORDER_AMBIGUITY_SECONDS: '600'
  WEBHOOK_MAX_BODY_BYTES: '16777216'
  AUTH_FLOW_TTL_SECONDS: '600'
}

var connectorAppSettings = union(connectorSettingDefaults, connectorSettings, {
  BC_TENANT: bcTenant
  BC_CLIENT_ID: bcClientId
  BC_ENVIRONMENT: bcEnvironment
  BC_GRANT_TYPE: bcGrantType
  BC_COMPANY: bcCompany
  BC_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.bcClientSecretUri})'
  TOKEN_ENCRYPTION_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.tokenEncryptionKeyUri})'
})

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    tags: tags
    queueNames: queueNames
    tableNames: tableNames
    blobContainerNames: blobContainerNames
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
    enablePurgeProtection: enableKeyVaultPurgeProtection
    bcClientSecret: bcClientSecret
    tokenEncryptionKey: tokenEncryptionKey
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  // The host starts reading storage and Key Vault at once; give it its roles first.
  dependsOn: [
    rbac
  ]
  params: {
    planName: names.plan
    name: names.functionApp
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    connectorAppSettings: connectorAppSettings
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
  }
}

@description('Region of the deployment.')
output AZURE_LOCATION string = location

@description('Entra tenant of the subscription.')
output AZURE_TENANT_ID string = subscription().tenantId

@description('Resource group holding everything.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('Name of the function app (for func azure functionapp publish).')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Public base URL of the function app; the OAuth redirect URI is <url>/api/auth/callback.')
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'

@description('Name of the key vault holding the secrets.')
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name

@description('Name of the storage account.')
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
