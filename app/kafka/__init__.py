"""Kafka: how clients connect, the topics, their creation, wire headers, message signatures."""
