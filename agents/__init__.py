"""The worker: the stream stages as Faust agents (normalize, templates, stats, detect, alerts,
index, ops), one module each, and the worker process that hosts them (`agents.worker`).

Each stage module has `register(app, topics, settings)`; `agents.worker.create_worker_app` calls
them.
"""
