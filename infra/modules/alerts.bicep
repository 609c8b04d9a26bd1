// Alert rules over the connector's telemetry in Application Insights, and the action group they notify.
// The rules query the OpenTelemetry metrics the connector emits (customMetrics, `bc_connector.*`, dimension
// `connection`) and the Functions host's invocations (requests); README "Operate it: alerts" says what each one
// means and what to do. A rule fires once per connection, queue or function (its dimension).

@description('Name of the action group.')
param actionGroupName string

@description('Prefix of the alert rule names; each rule appends its own name.')
param alertRulePrefix string

@description('Azure region of the alert rules (the action group is global).')
param location string

@description('Tags applied to the action group and the alert rules.')
param tags object

@description('Resource id of the Application Insights component the rules query.')
param applicationInsightsId string

@description('E-mail address the action group notifies; empty = no receiver (add one in the portal later).')
param alertEmail string

@description('An item pull is overdue after this many seconds without moving its cursor.')
@minValue(60)
param pullOverdueSeconds int

@description('A sweep is overdue after this many seconds without moving its cursor.')
@minValue(60)
param sweepOverdueSeconds int

@description('Alert when more than this percentage of a function\'s invocations fail within 15 minutes.')
@minValue(1)
@maxValue(100)
param functionFailureRatePercent int

// Each rule: its query returns one row per thing in trouble, so it fires when the query returns any row.
// Gauges (poison depth, subscriptions, seconds since) take each series' latest value within the window.
var alerts = [
  {
    name: 'poison-messages'
    displayName: 'bc-connector: messages on a poison queue'
    description: 'A message failed for good and waits on a poison queue (sales-orders-poison, bc-notifications-poison, bc-item-pulls-poison). Read it, fix the cause, then replay it: python -m connector replay-poison <queue>.'
    severity: 2
    windowSize: 'PT1H'
    dimension: 'queue'
    query: '''
customMetrics
| where name == "bc_connector.poison_depth"
| extend queue = tostring(customDimensions["queue"])
| summarize arg_max(timestamp, value) by queue
| where value > 0
'''
  }
  {
    name: 'token-failures'
    displayName: 'bc-connector: a connection has no usable token'
    description: 'BC calls of a connection failed for want of a token (refresh failed, sign-in revoked, client secret expired). Check /api/status; sign in again at /api/connections/<connection>/login, or renew the client secret in Key Vault.'
    severity: 1
    windowSize: 'PT15M'
    dimension: 'connection'
    query: '''
customMetrics
| where name == "bc_connector.token_failures"
| extend connection = tostring(customDimensions["connection"])
| summarize failures = sum(valueSum) by connection
| where failures > 0
'''
  }
  {
    name: 'health-events'
    displayName: 'bc-connector: a health event asks for a person'
    description: 'The connector sent a bc.connector.* health event that needs action (sign-in needed, credentials refused, client secret expiring within 30 days, environment copied or restored, an order gone after a restore, BC budget exhausted, poison growing). The event on the bc-connector-health queue and /api/status say what happened and what to do.'
    severity: 2
    windowSize: 'PT1H'
    dimension: 'type'
    query: '''
traces
| where message startswith "health " and message has "bc.connector."
| extend type = extract(@"(bc\.connector\.[a-z.]+)", 1, message)
| where type in ("bc.connector.signin.needed", "bc.connector.token.failing", "bc.connector.secret.expiring", "bc.connector.environment.copied", "bc.connector.environment.restored", "bc.connector.order.vanished", "bc.connector.budget.exhausted", "bc.connector.poison.growing", "bc.connector.subscription.failing")
| summarize events = count() by type
'''
  }
  {
    name: 'subscriptions'
    displayName: 'bc-connector: webhook subscription missing or failing'
    description: 'A connection has no active BC webhook subscription, or one whose creation or renewal failed: created events arrive only through the sweep. Check /api/status, then POST /api/connections/<connection>/subscriptions.'
    severity: 1
    windowSize: 'PT1H'
    dimension: 'connection'
    query: '''
customMetrics
| where name in ("bc_connector.subscriptions", "bc_connector.seconds_since_pull", "bc_connector.seconds_since_sweep")
| extend connection = tostring(customDimensions["connection"]), state = tostring(customDimensions["state"])
| summarize arg_max(timestamp, value) by name, connection, state
| summarize active = sumif(value, name == "bc_connector.subscriptions" and state == "active"),
            failed = sumif(value, name == "bc_connector.subscriptions" and state == "failed") by connection
| where active == 0 or failed > 0
'''
  }
  {
    name: 'function-failures'
    displayName: 'bc-connector: functions failing'
    description: format('More than {0} % of a function\'s invocations failed in 15 minutes (at least 5 ran). Read the exceptions and traces of that function in Application Insights.', functionFailureRatePercent)
    severity: 2
    windowSize: 'PT15M'
    dimension: 'name'
    query: format('''
requests
| summarize total = count(), failed = countif(success == false) by name
| where total >= 5 and 100.0 * failed / total > {0}
''', functionFailureRatePercent)
  }
  {
    name: 'pull-overdue'
    displayName: 'bc-connector: no successful item pull for two schedule periods'
    description: 'The item pull of a connection has not moved its cursor for two periods of ITEM_PULL_SCHEDULE: pulled events stop. Check /api/status (token, last pull) and the Schedule Pull Items invocations.'
    severity: 2
    windowSize: 'PT1H'
    dimension: 'connection'
    query: format('''
customMetrics
| where name == "bc_connector.seconds_since_pull"
| extend connection = tostring(customDimensions["connection"])
| summarize arg_max(timestamp, value) by connection
| where value > {0}
''', pullOverdueSeconds)
  }
  {
    name: 'sweep-overdue'
    displayName: 'bc-connector: no successful sweep for two schedule periods'
    description: 'The sweep of a connection has not moved its cursor for two periods of SWEEP_SCHEDULE: changes the webhooks miss are no longer filled in. Check /api/status and the sweep invocations.'
    severity: 3
    windowSize: 'PT1H'
    dimension: 'connection'
    query: format('''
customMetrics
| where name == "bc_connector.seconds_since_sweep"
| extend connection = tostring(customDimensions["connection"])
| summarize arg_max(timestamp, value) by connection
| where value > {0}
''', sweepOverdueSeconds)
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'bc-connector'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for alert in alerts: {
    name: '${alertRulePrefix}-${alert.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: alert.displayName
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [
        applicationInsightsId
      ]
      evaluationFrequency: 'PT5M'
      windowSize: alert.windowSize
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            dimensions: [
              {
                name: alert.dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

@description('Resource id of the action group (add SMS, webhook or Teams receivers to it as needed).')
output actionGroupId string = actionGroup.id
