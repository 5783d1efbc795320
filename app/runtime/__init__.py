"""Process plumbing: metrics, readiness, the retry helper, log filtering and GC tuning."""
