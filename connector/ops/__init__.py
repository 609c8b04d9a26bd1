"""Operating the connector: health and status routes, the status report."""
