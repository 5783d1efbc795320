"""Process plumbing: metrics, readiness, log filtering and garbage-collector tuning."""
