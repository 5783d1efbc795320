"""The `laas` command line."""

from __future__ import annotations

import sys

import click

from app.runtime.logfilter import quiet_repeats
from app.settings import Settings, load_settings


@click.group()
@click.version_option(package_name="laas", prog_name="laas")
@click.pass_context
def main(ctx: click.Context) -> None:
    """LaaS: Logging as a Service.

    Shell completion: `eval "$(laas completion bash)"` (or zsh, fish); see the README.
    """
    ctx.obj = load_settings()
    quiet_repeats()  # aiokafka floods the log while a broker is away


pass_settings = click.make_pass_decorator(Settings)


@main.group()
def stack() -> None:
    """The local Kafka, Elasticsearch and PostgreSQL servers."""


@stack.command("up", short_help="Start the local services and wait until they are ready.")
@pass_settings
def stack_up(settings: Settings) -> None:
    """Start every local service not configured elsewhere and wait until it is ready."""
    from deploy.stack import Stack, StackError

    try:
        for line in Stack(settings).up():
            click.echo(line)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    ensure_topics_or_exit(settings)


def ensure_topics_or_exit(settings: Settings) -> None:
    """Create or check every LaaS topic (app/kafka/admin.py); a clear error when one differs
    or Kafka does not answer."""
    from agents.worker import ensure_worker_topics
    from app.kafka.admin import KafkaNotReachable, TopicMismatch

    try:
        ensure_worker_topics(settings, say=lambda line: click.echo(line, err=True))
    except (TopicMismatch, KafkaNotReachable) as exc:
        raise click.ClickException(str(exc)) from exc


@stack.command("down")
@pass_settings
def stack_down(settings: Settings) -> None:
    """Stop the local services this stack started (and nothing else)."""
    from deploy.stack import Stack

    for line in Stack(settings).down():
        click.echo(line)


@stack.command("status", short_help="Each service's address and state; exit 1 if one is down.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array")
@pass_settings
def stack_status(settings: Settings, as_json: bool) -> None:
    """Show each service, its address and whether it is up; exit 1 if one is down."""
    import dataclasses
    import json

    from deploy.stack import Stack

    statuses = Stack(settings).status()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(status) for status in statuses]))
    for status in statuses if not as_json else []:
        click.echo(status.line())
    if not all(status.up for status in statuses):
        sys.exit(1)


@main.command(short_help="Run the Faust stream worker.")
@pass_settings
def worker(settings: Settings) -> None:
    """Run the Faust stream worker (creates or checks the LaaS topics first)."""
    from agents.worker import run_worker

    ensure_topics_or_exit(settings)
    run_worker(settings)


@main.command()
@pass_settings
def web(settings: Settings) -> None:
    """Run the web app (HTTP API, WebSockets, UI)."""
    import uvicorn

    from web.app import create_app, server_config

    try:
        config = server_config(create_app(settings), settings)
    except ValueError as exc:  # TLS files unreadable, plain HTTP off loopback
        raise click.ClickException(str(exc)) from exc
    uvicorn.Server(config).run()


@main.command(short_help="Run everything: the stack if needed, the topics, every process.")
@click.option("--demo/--no-demo", default=True, show_default=True,
              help="Send gentle demo traffic (with an alert now and then) to tenant demo")
@pass_settings
def up(settings: Settings, demo: bool) -> None:
    """Start the stack if needed, create the topics, then every LaaS process; Ctrl-C stops
    the processes."""
    from app.cli.up import run_up

    sys.exit(run_up(settings, demo=demo))


@main.command(short_help="Print the shell completion script (bash, zsh or fish).")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the script that completes `laas` commands and options in SHELL (click's own
    completion); load it with `eval "$(laas completion bash)"` in ~/.bashrc, the same with
    zsh in ~/.zshrc, or `laas completion fish | source` in fish."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the choices are click's built-in shells
    click.echo(completer(main, {}, "laas", "_LAAS_COMPLETE").source())


from app.cli.accounts import register as register_account_commands  # noqa: E402

register_account_commands(main)

from app.cli.ingest import register as register_ingest_commands  # noqa: E402

register_ingest_commands(main)

from app.cli.stream import register as register_stream_commands  # noqa: E402

register_stream_commands(main)

from app.cli.query import register as register_query_commands  # noqa: E402

register_query_commands(main)

from app.cli.bench import register as register_bench_commands  # noqa: E402

register_bench_commands(main)

from app.cli.topics import register as register_topic_commands  # noqa: E402

register_topic_commands(main)
