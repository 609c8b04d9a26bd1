"""Schedule Pull Items: the timer, the pull route and its queue, the resumable paged pull."""
