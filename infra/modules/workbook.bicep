// Azure Monitor workbook over Application Insights: throughput, latency and failures per connection, from the
// connector's OpenTelemetry metrics (customMetrics, `bc_connector.*`) and the host's invocations (requests).

@description('Display name of the workbook.')
param displayName string

@description('Azure region of the workbook.')
param location string

@description('Tags applied to the workbook.')
param tags object

@description('Resource id of the Application Insights component the workbook queries.')
param applicationInsightsId string

// One chart per panel, over the time range picked at the top of the workbook.
var panels = [
  {
    title: 'Sales orders per connection and status'
    visualization: 'timechart'
    query: '''
customMetrics
| where name == "bc_connector.orders"
| extend series = strcat(tostring(customDimensions["connection"]), " ", tostring(customDimensions["status"]))
| summarize orders = sum(valueSum) by series, bin(timestamp, {TimeRange:grain})
'''
  }
  {
    title: 'Events queued per connection and type'
    visualization: 'timechart'
    query: '''
customMetrics
| where name == "bc_connector.events"
| extend series = strcat(tostring(customDimensions["connection"]), " ", tostring(customDimensions["type"]))
| summarize events = sum(valueSum) by series, bin(timestamp, {TimeRange:grain})
'''
  }
  {
    title: 'BC change to event: average and longest seconds per connection'
    visualization: 'timechart'
    query: '''
customMetrics
| where name == "bc_connector.change_to_event_seconds"
| extend connection = tostring(customDimensions["connection"])
| summarize average = sum(valueSum) / sum(valueCount), longest = max(valueMax) by connection, bin(timestamp, {TimeRange:grain})
'''
  }
  {
    title: 'BC requests per connection and status code; 429s and back-off seconds'
    visualization: 'timechart'
    query: '''
customMetrics
| where name in ("bc_connector.bc_requests", "bc_connector.bc_throttled", "bc_connector.backoff_seconds")
| extend series = strcat(tostring(customDimensions["connection"]), " ", replace_string(name, "bc_connector.", ""), " ", tostring(customDimensions["status_code"]))
| summarize total = sum(valueSum) by series, bin(timestamp, {TimeRange:grain})
'''
  }
  {
    title: 'Failures per connection: failed orders, token failures, BC 5xx'
    visualization: 'table'
    query: '''
customMetrics
| where name in ("bc_connector.orders", "bc_connector.token_failures", "bc_connector.bc_requests")
| extend connection = tostring(customDimensions["connection"]), status = tostring(customDimensions["status"]), code = toint(customDimensions["status_code"])
| summarize failedOrders = sumif(valueSum, name == "bc_connector.orders" and status == "failed"),
            tokenFailures = sumif(valueSum, name == "bc_connector.token_failures"),
            bcServerErrors = sumif(valueSum, name == "bc_connector.bc_requests" and code >= 500) by connection
'''
  }
  {
    title: 'Function invocations and failures'
    visualization: 'table'
    query: '''
requests
| summarize invocations = count(), failed = countif(success == false), p95Ms = percentile(duration, 95) by name
| extend failedPercent = round(100.0 * failed / invocations, 1)
| order by failed desc
'''
  }
  {
    title: 'Now: subscriptions by state, seconds since pull and sweep, poison queues'
    visualization: 'table'
    query: '''
customMetrics
| where name in ("bc_connector.subscriptions", "bc_connector.seconds_since_pull", "bc_connector.seconds_since_sweep", "bc_connector.poison_depth")
| extend connection = tostring(customDimensions["connection"]), detail = strcat(tostring(customDimensions["state"]), tostring(customDimensions["queue"]))
| summarize arg_max(timestamp, value) by name, connection, detail
| project connection, metric = replace_string(name, "bc_connector.", ""), detail, value, at = timestamp
| order by connection asc, metric asc
'''
  }
]

var timeRangeParameter = {
  type: 9
  name: 'parameters'
  content: {
    version: 'KqlParameterItem/1.0'
    parameters: [
      {
        id: 'time-range'
        version: 'KqlParameterItem/1.0'
        name: 'TimeRange'
        label: 'Time range'
        type: 4
        isRequired: true
        value: {
          durationMs: 86400000
        }
        typeSettings: {
          allowCustom: true
        }
      }
    ]
  }
}

var charts = map(panels, panel => {
  type: 3
  name: panel.title
  content: {
    version: 'KqlItem/1.0'
    title: panel.title
    query: panel.query
    queryType: 0
    resourceType: 'microsoft.insights/components'
    visualization: panel.visualization
    size: 0
    timeContextFromParameter: 'TimeRange'
  }
})

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's resource name must be a GUID; people see displayName.
  name: guid(applicationInsightsId, displayName)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: string({
      version: 'Notebook/1.0'
      items: concat([
        timeRangeParameter
      ], charts)
      fallbackResourceIds: [
        applicationInsightsId
      ]
    })
  }
}

@description('Resource id of the workbook.')
output id string = workbook.id
