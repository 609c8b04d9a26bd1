// bc-connector on Azure: one resource group with a Flex Consumption function app running as a user-assigned
// identity, its storage account, a key vault for the secrets, Log Analytics + Application Insights, alert rules
// with an action group, and a workbook.
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

@description('BC_ENVIRONMENT: Business Central environment name; empty = the connector\'s default.')
param bcEnvironment string = ''

@description('BC_GRANT_TYPE: authorization_code (a user signs in once) or client_credentials (service-to-service); empty = the connector\'s default.')
@allowed([
  ''
  'authorization_code'
  'client_credentials'
])
param bcGrantType string = ''

@description('BC_COMPANY: company id or name; empty = the first company discovered.')
param bcCompany string = ''

@description('BC_CLIENT_CREDENTIAL: secret (bcClientSecret) or managed-identity (the app registration trusts this app\'s user-assigned identity as a federated credential, see the FEDERATED_CREDENTIAL_* outputs: no secret to rotate); empty = the connector\'s default (secret).')
@allowed([
  ''
  'secret'
  'managed-identity'
])
param bcClientCredential string = ''

@description('BC_CLIENT_SECRET_EXPIRES: the day the client secret expires (YYYY-MM-DD); the status page, a bc.connector.secret.expiring health event and the health-events alert warn 30 days ahead. Empty = not tracked.')
param bcClientSecretExpires string = ''

@secure()
@description('BC_CLIENT_SECRET, stored in Key Vault. Empty = keep the secret already in the vault (or set it later with az keyvault secret set).')
param bcClientSecret string = ''

@secure()
@description('TOKEN_ENCRYPTION_KEY (Fernet key, urlsafe base64 of 32 bytes), stored in Key Vault. Empty = keep the secret already in the vault.')
param tokenEncryptionKey string = ''

@secure()
@description('Connector app settings to add or override by name, e.g. {"BC_CONNECTIONS": "default,emea", "EMEA__BC_TENANT": "..."}; the README lists each. Secure, so nothing in it lands in the deployment history; secrets still belong in connectorSecrets. The bc* parameters and the Key Vault references win over these.')
param connectorSettings object = {}

@secure()
@description('Secret app settings by name, e.g. {"EMEA__BC_CLIENT_SECRET": "..."} for another connection: each is stored in Key Vault (as emea--bc-client-secret) and the app setting becomes a Key Vault reference. An empty value keeps the secret already in the vault.')
param connectorSecrets object = {}

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

@description('Optional. Close the storage account and the key vault to public networks: only the subnets in allowedSubnetIds, the addresses in allowedIpRanges and trusted Azure services get through. The function app joins the first subnet (virtual network integration: delegate it to Microsoft.App/environments and give it the Microsoft.Storage and Microsoft.KeyVault service endpoints). docs/deploy.md, "Closing storage and Key Vault to public networks".')
param restrictNetworkAccess bool = false

@description('Optional. With restrictNetworkAccess: resource ids of the subnets let through; the first is the function app\'s integration subnet.')
param allowedSubnetIds array = []

@description('Optional. With restrictNetworkAccess: public IP ranges (CIDR) let through, e.g. the machine that runs azd deploy (the package goes to storage).')
param allowedIpRanges array = []

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('E-mail address the alerts notify (through the action group); empty = no receiver yet (add one in the portal).')
param alertEmail string = ''

@description('Alert when more than this percentage of a function\'s invocations fail within 15 minutes.')
@minValue(1)
@maxValue(100)
param functionFailureRatePercent int = 10

@description('Longest time in seconds between item pulls, if connectorSettings changes ITEM_PULL_SCHEDULE; 0 = that of the default schedule. The overdue-pull alert waits two of these.')
@minValue(0)
param itemPullPeriodSeconds int = 0

@description('Longest time in seconds between sweeps, if connectorSettings changes SWEEP_SCHEDULE; 0 = that of the default schedule. The overdue-sweep alert waits two of these.')
@minValue(0)
param sweepPeriodSeconds int = 0

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
  actionGroup: 'ag-${environmentName}-${resourceToken}'
  alertRules: 'alert-${environmentName}-${resourceToken}'
  workbook: 'bc-connector ${environmentName} (${resourceToken})'
}

// Queue, table and container names, and the settings the Functions host resolves itself (the `%NAME%` timer
// schedules), as declared in connector/settings.py: generated by `make settings`, checked by make test.
var connector = loadJsonContent('connector.json')
var deploymentContainerName = 'app-package'
// The Functions host's own blob containers (singleton locks and timer schedules; function keys).
var hostContainerNames = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]

// Every secret setting the connector declares is a Key Vault reference; its value comes from the parameters
// above, connectorSecrets, or the vault itself (empty = keep).
var secretValues = union(toObject(connector.secretSettings, setting => setting, setting => ''), {
  BC_CLIENT_SECRET: bcClientSecret
  TOKEN_ENCRYPTION_KEY: tokenEncryptionKey
}, connectorSecrets)

// Every other connector setting has its default in the code, so only what differs is deployed: the host-binding
// settings, connectorSettings, the BC parameters that are set, and Key Vault references for the secrets.
// AzureWebJobsStorage is replaced by the identity-based AzureWebJobsStorage__* settings in modules/function-app.bicep.
var optionalBcSettings = {
  BC_ENVIRONMENT: bcEnvironment
  BC_GRANT_TYPE: bcGrantType
  BC_COMPANY: bcCompany
  BC_CLIENT_CREDENTIAL: bcClientCredential
  BC_CLIENT_SECRET_EXPIRES: bcClientSecretExpires
}

var connectorAppSettings = union(
  connector.hostBindingSettings,
  connectorSettings,
  toObject(filter(items(optionalBcSettings), setting => !empty(setting.value)), setting => setting.key, setting => setting.value),
  {
    BC_TENANT: bcTenant
    BC_CLIENT_ID: bcClientId
  },
  keyVault.outputs.references
)

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
    queueNames: connector.queues
    tableNames: connector.tables
    blobContainerNames: connector.blobContainers
    deploymentContainerName: deploymentContainerName
    hostContainerNames: hostContainerNames
    restrictNetworkAccess: restrictNetworkAccess
    allowedSubnetIds: allowedSubnetIds
    allowedIpRanges: allowedIpRanges
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
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
    secrets: secretValues
    secretSettingNames: map(items(secretValues), setting => setting.key)
    restrictNetworkAccess: restrictNetworkAccess
    allowedSubnetIds: allowedSubnetIds
    allowedIpRanges: allowedIpRanges
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
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
    appContainerNames: connector.appWrittenBlobContainers
    appReadContainerNames: connector.appReadBlobContainers
    hostContainerNames: concat(hostContainerNames, [
      deploymentContainerName
    ])
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
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    virtualNetworkSubnetId: restrictNetworkAccess && !empty(allowedSubnetIds) ? allowedSubnetIds[0] : ''
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    actionGroupName: names.actionGroup
    alertRulePrefix: names.alertRules
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
    functionFailureRatePercent: functionFailureRatePercent
    // Two schedule periods without a pull (or sweep) that moved its cursor.
    pullOverdueSeconds: 2 * ((itemPullPeriodSeconds > 0) ? itemPullPeriodSeconds : connector.schedulePeriodSeconds.ITEM_PULL_SCHEDULE)
    sweepOverdueSeconds: 2 * ((sweepPeriodSeconds > 0) ? sweepPeriodSeconds : connector.schedulePeriodSeconds.SWEEP_SCHEDULE)
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    displayName: names.workbook
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
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

@description('Federated credential for BC_CLIENT_CREDENTIAL=managed-identity: the issuer to enter on the app registration (Certificates & secrets > Federated credentials > Managed identity).')
output FEDERATED_CREDENTIAL_ISSUER string = '${environment().authentication.loginEndpoint}${subscription().tenantId}/v2.0'

@description('Federated credential: the subject, the principal (object) id of the function app\'s user-assigned identity.')
output FEDERATED_CREDENTIAL_SUBJECT string = identity.outputs.principalId

@description('Federated credential: the audience Entra expects in the identity\'s token.')
output FEDERATED_CREDENTIAL_AUDIENCE string = 'api://AzureADTokenExchange'
