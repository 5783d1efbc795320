"""Container health checks (docker-compose.yml, deploy/Dockerfile):
`python -m deploy.healthcheck web|gateway|worker` exits 0 when that LaaS process, in this
container, is healthy, else prints why and exits 1. Ports come from the same `LAAS_*` settings
the process reads.

- web: `GET /readyz` answers 200 (Kafka with the LaaS topics, Elasticsearch and the user
  database reachable); `--live` asks `/healthz` instead (the process answers).
- gateway: the standard gRPC health service says `laas.v1.LogIngest` is SERVING (it is
  NOT_SERVING while Kafka cannot be reached; plaintext only: with
  `tls_certfile` set, check its metrics port instead with `--live`).
- worker: its web server (`worker_web_port`) answers `/readyz` (the web app's checks);
  `--live` asks `/healthz`.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import urllib.request

from app.settings import LOCAL_HOST, Settings, load_settings

TIMEOUT = 4.0


def _local(host: str) -> str:
    """Where to reach a process bound to `host` from inside its container."""
    return LOCAL_HOST if host in ("0.0.0.0", "::", "") else host


def _get(url: str) -> None:
    context = ssl._create_unverified_context() if url.startswith("https") else None  # noqa: S323 - own certificate, local check
    with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as response:
        if response.status != 200:
            raise OSError(f"{url} answered {response.status}")


def check_web(settings: Settings, live: bool) -> None:
    scheme = "https" if settings.tls_certfile else "http"
    path = "/healthz" if live else "/readyz"
    _get(f"{scheme}://{_local(settings.web_host)}:{settings.web_port}{path}")


def check_gateway(settings: Settings, live: bool) -> None:
    if live or settings.tls_certfile:
        _get(f"http://{_local(settings.gateway_host)}:{settings.gateway_metrics_port}/metrics")
        return
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from app.ingest.gateway import LOG_INGEST

    target = f"{_local(settings.gateway_host)}:{settings.gateway_port}"
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(  # NOT_SERVING without Kafka
            health_pb2.HealthCheckRequest(service=LOG_INGEST), timeout=TIMEOUT)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise OSError(f"gRPC health of {target}: "
                      f"{health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")


def check_worker(settings: Settings, live: bool) -> None:
    path = "/healthz" if live else "/readyz"
    _get(f"http://{_local(settings.web_host)}:{settings.worker_web_port}{path}")


CHECKS = {"web": check_web, "gateway": check_gateway, "worker": check_worker}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.healthcheck",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("process", choices=sorted(CHECKS))
    parser.add_argument("--live", action="store_true", help="liveness only (see above)")
    args = parser.parse_args(argv)
    try:
        CHECKS[args.process](load_settings(), args.live)
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", said on stderr
        print(f"{args.process} unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
