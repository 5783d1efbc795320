"""Elasticsearch: client, index layout and ensure_index, bulk sink, retention, promotion."""
