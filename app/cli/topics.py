"""`laas topics ensure | status`: the LaaS topics on a Kafka cluster (yours or the stack's)."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from app.settings import Settings

pass_settings = click.make_pass_decorator(Settings)


def register(main: click.Group) -> None:
    @main.group(short_help="Create and check the LaaS Kafka topics.")
    def topics() -> None:
        """Create and check the LaaS Kafka topics (for operators with their own Kafka)."""

    @topics.command("ensure", short_help="Create every missing LaaS topic; fail if one differs.")
    @pass_settings
    def ensure(settings: Settings) -> None:
        """Create every missing LaaS topic (raw, events, dead letters, alerts, rule counts, the
        table changelogs and Faust's leader topics); fail when an existing one differs."""
        from app.cli.main import ensure_topics_or_exit

        ensure_topics_or_exit(settings)
        click.echo(f"all LaaS topics present on {settings.kafka_servers}")

    @topics.command("status", short_help="Each topic's state and each consumer group's lag.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object")
    @pass_settings
    def status(settings: Settings, as_json: bool) -> None:
        """Partitions, replication, configs and state of each topic, and the lag of each
        consumer group; exit 1 when a topic is missing or differs."""
        from agents.worker import consumer_groups, worker_topic_specs
        from app.kafka.admin import KafkaNotReachable, topics_status

        try:
            reports, lags = asyncio.run(topics_status(
                settings, worker_topic_specs(settings), consumer_groups(settings)))
        except KafkaNotReachable as exc:
            raise click.ClickException(str(exc)) from exc
        if as_json:
            click.echo(json.dumps({
                "topics": [{
                    "name": r.spec.name, "status": r.status,
                    "partitions": r.state.partitions if r.state else None,
                    "replication": r.state.replication if r.state else None,
                    "config": {k: r.state.config.get(k) for k in r.spec.config} if r.state
                    else {}, "wanted": {"partitions": r.spec.partitions,
                                        "replication": r.spec.replication,
                                        "config": dict(r.spec.config)},
                    "problems": r.problems} for r in reports],
                "lag": [{"group": g.group, "topic": g.topic, "total": sum(g.lag.values()),
                         "partitions": {str(p): n for p, n in g.lag.items()}} for g in lags],
            }))
        else:
            width = max(len(r.spec.name) for r in reports)
            click.echo(f"{'TOPIC':<{width}}  STATUS   PARTS  REPL  CONFIG")
            for r in reports:
                parts = str(r.state.partitions) if r.state else "-"
                repl = str(r.state.replication) if r.state else "-"
                config = ",".join(f"{k}={r.state.config.get(k) if r.state else v}"
                                  for k, v in sorted(r.spec.config.items()))
                click.echo(f"{r.spec.name:<{width}}  {r.status:<7}  {parts:>5}  {repl:>4}  "
                           f"{config}")
                for problem in r.problems:
                    click.echo(f"  ! {problem}")
            click.echo("")
            click.echo("GROUP / TOPIC: LAG (per partition)")
            for g in lags:
                per = " ".join(f"{p}:{n}" for p, n in sorted(g.lag.items()))
                click.echo(f"{g.group} / {g.topic}: {sum(g.lag.values())} ({per})")
        if any(r.status != "ok" for r in reports):
            sys.exit(1)
