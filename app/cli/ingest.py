"""`laas gateway`, `laas send` (file shipper, stdin, demo and load generator) and `laas demo`."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterator
from functools import partial
from typing import IO

import click

from app.settings import Settings


def file_records(stream: IO[str], service: str | None, as_json: bool) -> Iterator[object]:
    """One record per non-empty line: JSON objects with --json, else plain messages."""
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        doc: object = json.loads(line) if as_json else {"message": line}
        if service and isinstance(doc, dict) and "message" in doc:
            doc.setdefault("service", service)
        yield doc


def register(main: click.Group) -> None:
    """Add the ingest commands to the `laas` group."""
    pass_settings = click.make_pass_decorator(Settings)

    @main.command(short_help="Run the ingest gateway (gRPC: laas.v1 and OTLP).")
    @pass_settings
    def gateway(settings: Settings) -> None:
        """Run the ingest gateway (laas.v1.LogIngest and OTLP) on gateway_port."""
        from app.ingest.gateway import run_gateway

        run_gateway(settings)

    @main.command(short_help="Send demo traffic to tenant `demo` until stopped.")
    @click.option("--rate", type=float, default=8.0, show_default=True,
                  help="Mean records per second of the normal traffic")
    @click.option("--first-burst", type=float, default=20.0, show_default=True,
                  help="Seconds until the first error burst (then every 60-90 s)")
    @pass_settings
    def demo(settings: Settings, rate: float, first_burst: float) -> None:
        """Send a live demo stream to tenant `demo` until stopped (`laas up` runs it).

        Several services and hosts, recurring templates, and an error burst on `payments`
        about every minute that fires the demo alert rule. The ingest key is kept in
        state_dir/demo-ingest-key.txt. Does nothing when there is no tenant `demo`.
        """
        from app.cli.demo import run_demo

        sys.exit(run_demo(settings, rate=rate, first_burst=first_burst))

    @main.command()
    @click.argument("source", required=False, type=click.File("r"))
    @click.option("--api-key", envvar="LAAS_API_KEY", required=True,
                  help="Ingest API key (or LAAS_API_KEY)")
    @click.option("--url", default=None,
                  help="http://host:port (HTTP ingest) or grpc://host:port (gateway); "
                       "default: the local web app")
    @click.option("--service", default=None, help="Service name of the records")
    @click.option("--json", "as_json", is_flag=True, help="SOURCE lines are JSON records")
    @click.option("--demo", is_flag=True, help="Send generated demo traffic")
    @click.option("--count", type=int, default=None, help="Stop after N records")
    @click.option("--rate", type=float, default=None, help="Records per second (default: max)")
    @click.option("--batch-size", type=int, default=500, show_default=True)
    @pass_settings
    def send(settings: Settings, source: IO[str] | None, api_key: str, url: str | None,
             service: str | None, as_json: bool, demo: bool, count: int | None,
             rate: float | None, batch_size: int) -> None:
        """Send a file ('-': stdin), or demo or load traffic, to LaaS.

        Shows a progress bar.
        """
        from laas_client import SendError, Shipper

        from app.cli.demo import demo_records
        from app.ingest.convert import ConversionError
        from app.ingest.jsonpb import pb_record_from_json
        from app.runtime.retry import RetryPolicy, retry_blocking

        if demo == (source is not None):
            raise click.UsageError("give exactly one of SOURCE or --demo")
        docs: Iterator[object] = (demo_records(service) if demo
                                  else file_records(source or sys.stdin, service, as_json))
        if count is not None:
            docs = itertools.islice(docs, count)
        if demo and count is None:
            count = 1000
            docs = itertools.islice(docs, count)
        if count is None and source is not None and source.seekable():
            count = sum(1 for line in source if line.strip())
            source.seek(0)
        shipper = Shipper(url or settings.web_url, api_key)
        policy = RetryPolicy(SendError, initial=0.5, maximum=16.0, attempts=6,
                             retry_if=lambda exc: isinstance(exc, SendError) and exc.retry,
                             retry_after=lambda exc: getattr(exc, "retry_after", None))
        accepted = rejected = 0
        started = time.monotonic()
        with click.progressbar(length=count or 0, label="sending", show_pos=True,
                               show_percent=bool(count), show_eta=bool(count)) as bar:
            while True:
                batch = []
                for doc in itertools.islice(docs, batch_size):
                    try:
                        batch.append(pb_record_from_json(doc))
                    except ConversionError as exc:
                        rejected += 1
                        click.echo(f"\nskipped: {exc}", err=True)
                if not batch:
                    break
                try:
                    result = retry_blocking(partial(shipper.push, batch), policy)
                except SendError as exc:
                    raise click.ClickException(str(exc)) from exc
                accepted += result.accepted
                rejected += result.rejected
                for err in result.errors[:5]:
                    click.echo(f"\nrejected: {err}", err=True)
                bar.update(len(batch))
                if rate:
                    ahead = (accepted + rejected) / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        shipper.close()
        took = time.monotonic() - started
        click.echo(f"accepted {accepted}, rejected {rejected} in {took:.1f}s "
                   f"({accepted / took if took else 0:.0f} records/s)")
        if rejected and not accepted:
            sys.exit(1)
