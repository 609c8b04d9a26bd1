"""BC webhooks: subscriptions, receiver, notification processor, sweep, dedupe, the created-triggers."""
