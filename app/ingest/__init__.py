"""Ingest: validation, OTLP mapping, rate limits and the Kafka writer shared by every entry point.

The gRPC gateway (`app.ingest.gateway`) and the HTTP routes (`web.ingest`, and OTLP/HTTP on the
gateway's port: `app.ingest.otlp_http`) are thin adapters over `IngestService.push`
(`app.ingest.service`); the HTTP request handling they share is `app.ingest.http`. JSON
becomes a `LogRecord` through `app.ingest.jsonpb` (its reference: `app.ingest.convert`).
"""
