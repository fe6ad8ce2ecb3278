"""Background jobs: the runner that claims queued jobs, their status endpoint, and `$reindex`."""
