"""Pipeline stages, one module each: normalize, stats, index (and ops: metrics, retention).

Each module has `register(app, topics, settings)`; `app.worker.create_worker_app` calls them.
"""
