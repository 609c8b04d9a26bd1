"""Timer work fanned out through `bc-connection-work`: one unit per connection and task."""
