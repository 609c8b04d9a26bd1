"""Business Central API v2.0: client (paging, typed errors, back-off, budget), timestamps, companies."""
