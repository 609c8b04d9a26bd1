"""Connection health: `bc.connector.*` events on `bc-connector-health` for what an operator must act on."""
