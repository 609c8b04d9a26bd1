"""BC's external business events: a second, faster source for posted documents (docs/architecture.md)."""
