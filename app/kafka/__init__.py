"""Kafka: how clients connect, the topics, their creation, signatures of LaaS's own messages."""
