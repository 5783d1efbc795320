"""The worker: the stream stages as Faust agents (normalize, templates, stats, detect, alerts,
index, ops), one module each, and the worker process that hosts them (`agents.worker`).

Each stage module has `register(app, topics, resources)`; `agents.worker.create_worker_app` builds
the process's `agents.resources.Resources` (database engine, Elasticsearch client, repositories,
retry helper) and calls them.
"""
