"""The Starlette web app: HTTP API, WebSocket feeds and the web UI."""
