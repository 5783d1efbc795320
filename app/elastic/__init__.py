"""Elasticsearch: the client, the index layout and ensure_index, the bulk sink, retention."""
