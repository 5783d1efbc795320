"""Elasticsearch: the client factory, the index layout, the bulk sink, retention and promotion."""
