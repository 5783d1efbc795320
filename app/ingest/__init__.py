"""Ingest: validation, OTLP mapping, rate limits and the Kafka writer shared by every entry point.

The gRPC gateway (`app.ingest.gateway`) and the HTTP routes (`web.ingest`) are thin adapters over
`IngestService.push` (`app.ingest.service`).
"""
