"""LaaS's core, by concern: settings, then the packages accounts, db, kafka, elastic, ingest,
pipeline, templates, anomaly, query, live, runtime, and on top the command line (cli).

Nothing here imports `agents` or `web`, except `app.cli`, the top layer (docs/architecture.md).
"""
