"""Stream commands: `laas replay`, `laas retention`."""

from __future__ import annotations

import asyncio

import click

from app.settings import Settings

pass_settings = click.make_pass_decorator(Settings)


async def _tenant_id(settings: Settings, slug: str) -> str:
    from app.accounts import tenancy
    from app.accounts.errors import AccountError
    from app.db.engine import create_engine, session_factory

    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            try:
                return str((await tenancy.get_tenant(session, slug)).id)
            except AccountError as exc:
                raise click.ClickException(f"tenant {slug!r}: {exc}") from exc
    finally:
        await engine.dispose()


def register(main: click.Group) -> None:
    @main.command(short_help="Reprocess a tenant's logs.raw time range into Elasticsearch.")
    @click.option("--tenant", "slug", required=True, help="Tenant slug")
    @click.option("--since", required=True, help="Start: ISO 8601 time or 30m / 6h / 2d ago")
    @click.option("--until", default=None, help="End (exclusive); default: now")
    @click.option("--to-index", default=None,
                  help="Replay into a new index set NAME and swap the tenant alias to it")
    @pass_settings
    def replay(settings: Settings, slug: str, since: str, until: str | None,
               to_index: str | None) -> None:
        """Reprocess a tenant's logs.raw records of a time range into Elasticsearch.

        Idempotent (same document ids) and resumable: run the same command again after an
        interruption and it continues from its checkpoint.
        """
        from app.pipeline.replay import Replay, parse_when

        async def run() -> None:
            tenant_id = await _tenant_id(settings, slug)
            job = Replay(settings, tenant_id, parse_when(since),
                         parse_when(until) if until else None, to_index)
            with click.progressbar(length=1, label="replaying") as bar:
                def progress(done: int, total: int) -> None:
                    bar.length = max(total, 1)
                    bar.update(done - bar.pos)

                try:
                    result = await job.run(progress)
                finally:
                    await job.es.close()
            click.echo(f"{result.records} raw records read, {result.events} events indexed "
                       f"into {len(result.indices)} indices, {result.dead} dead letters, "
                       f"{result.rejected} rejected, {result.skipped_other_tenants} of other "
                       f"tenants skipped")
            for action in result.swapped:
                click.echo(f"alias: {action}")

        asyncio.run(run())

    @main.command(short_help="Delete log indices older than each tenant's retention.")
    @click.option("--dry-run", is_flag=True, help="Only list the indices that would go")
    @pass_settings
    def retention(settings: Settings, dry_run: bool) -> None:
        """Delete log indices older than each tenant's retention (the worker does it hourly)."""
        from app.elastic.client import es_client
        from app.elastic.retention import apply_retention, prune_snapshots, tenant_retention

        async def run() -> tuple[list[str], int]:
            es = es_client(settings)
            try:
                retention = await tenant_retention(settings)
                names = await apply_retention(es, settings, retention, dry_run=dry_run)
                return names, 0 if dry_run else await prune_snapshots(es, settings, retention)
            finally:
                await es.close()

        names, pruned = asyncio.run(run())
        for name in names:
            click.echo(("would delete " if dry_run else "deleted ") + name)
        if pruned:
            click.echo(f"deleted {pruned} pattern and source documents not seen since retention")
