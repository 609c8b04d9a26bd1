// Storage account for the Functions host, the deployment package and the connector's queues, tables and blobs.
// Shared keys are off: every client (host, connector, deployment) signs in with Entra ID. Writes and deletes on
// blobs, queues and tables (the audit log) and the account's transaction metrics go to Log Analytics.

@description('Name of the storage account (3-24 lower-case letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the storage account.')
param location string

@description('Tags applied to the storage account.')
param tags object

@description('Queues to create (the connector\'s QUEUE_NAMES, poison queues included).')
param queueNames array

@description('Tables to create (the connector\'s TABLE_NAMES).')
param tableNames array

@description('Blob containers the connector writes to (the connector\'s BLOB_CONTAINERS).')
param blobContainerNames array

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob containers the Functions host uses (locks, timer schedules, function keys), created here so the app\'s blob role can be scoped to them.')
param hostContainerNames array

@description('Optional. Deny public networks except allowedSubnetIds (service endpoint Microsoft.Storage), allowedIpRanges and trusted Azure services.')
param restrictNetworkAccess bool = false

@description('Optional. Subnet resource ids let through when restrictNetworkAccess is on.')
param allowedSubnetIds array = []

@description('Optional. Public IP ranges (CIDR) let through when restrictNetworkAccess is on.')
param allowedIpRanges array = []

@description('Resource id of the Log Analytics workspace that receives the storage logs and metrics.')
param logAnalyticsWorkspaceId string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled' // with restricted rules, only what networkAcls lets through
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: restrictNetworkAccess ? 'Deny' : 'Allow'
      virtualNetworkRules: [for subnetId in (restrictNetworkAccess ? allowedSubnetIds : []): {
        id: subnetId
        action: 'Allow'
      }]
      ipRules: [for range in (restrictNetworkAccess ? allowedIpRanges : []): {
        value: range
        action: 'Allow'
      }]
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in blobContainerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in hostContainerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

// Reads are left out (the queue triggers poll every few seconds); writes and deletes are the audit trail.
var serviceDiagnostics = {
  workspaceId: logAnalyticsWorkspaceId
  logs: [
    {
      categoryGroup: 'audit'
      enabled: true
    }
  ]
  metrics: [
    {
      category: 'Transaction'
      enabled: true
    }
  ]
}

resource accountDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: storage
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: serviceDiagnostics
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: serviceDiagnostics
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: serviceDiagnostics
}

@description('Name of the storage account.')
output name string = storage.name

@description('Blob endpoint, with a trailing slash.')
output blobEndpoint string = storage.properties.primaryEndpoints.blob

@description('Queue endpoint, with a trailing slash.')
output queueEndpoint string = storage.properties.primaryEndpoints.queue

@description('Table endpoint, with a trailing slash.')
output tableEndpoint string = storage.properties.primaryEndpoints.table
