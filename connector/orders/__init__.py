"""Send Created Sales Order: message schema, idempotent creation in BC, results and poison."""
