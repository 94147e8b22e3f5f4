"""The `headwater` command.

    headwater serve                      # gRPC and REST from one process (what `make run` does)
    headwater serve --workers 4          # from 4 processes behind the same addresses (PostgreSQL, Redis)
    headwater orgs create NAME           # a new organisation
    headwater orgs list                  # every organisation: name, id, created, how many tokens
    headwater tokens create --org NAME   # a new API token for it, printed once
    headwater tokens list [--org NAME]   # id, name, organisation, created, last used; never the token
    headwater tokens revoke ID           # running servers refuse it within 2 s
    headwater syncs watch ID             # a sync's progress, live (REST: --url, --token or $HEADWATER_TOKEN)
    headwater syncs list                 # the token's organisation's syncs, as the console lists them (REST)
    headwater credentials list           # its credentials: health, budget used (REST)
    headwater consumers list             # its consumers: pending, ack pending, parked (REST)

The lists print a table, or with --json a JSON array (times in UTC, ISO 8601). The syncs,
credentials and consumers lists ask a running server over REST, with an API token, and show the
columns of the console's tables (headwater.console.rows).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import signal
import sys
import time

import httpx

from peewee import IntegrityError

from headwater import logs, tracing
from headwater.auth import Auth
from headwater.console import rows as console_rows
from headwater.server import CannotListen, Server, settle_garbage_collector
from headwater.settings import ConfigError, Settings
from headwater.store import Store
from headwater.workers import CannotRunWorkers, Workers


async def serve(settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT: one server, or `settings.workers` processes (headwater.workers)."""
    if settings.workers > 1:
        server = await Workers.start(settings)
        token = server.first_token
    else:
        server = await Server.start(settings)
        token = await Auth(server.store).bootstrap()
        settle_garbage_collector()
    metrics = ""
    if settings.metrics_address is not None:
        metrics = f"; metrics on http://{settings.metrics_address.rsplit(':', 1)[0]}:{server.metrics_port}/metrics"
    workers = f"; {settings.workers} workers" if settings.workers > 1 else ""
    print(f"Headwater serving gRPC on {settings.grpc_address.rsplit(':', 1)[0]}:{server.grpc_port}"
          f" and REST on http://{settings.http_address.rsplit(':', 1)[0]}:{server.http_port}{metrics}{workers}",
          flush=True)
    if token:
        print("New database: created organisation 'default' with this API token (shown once, keep it):",
              flush=True)
        print(f"  {token}", flush=True)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    print("Shutting down: finishing calls in flight", flush=True)
    await server.stop()


def render_sync(sync: dict, rates: dict[str, float]) -> str:
    """A sync's progress as a small table (what `headwater syncs watch` redraws)."""
    health = sync["health"]
    backfill = sync["initial_backfill_completed_at"] or "in progress"
    lines = [
        f"Sync {sync['id']} {sync['name']!r} ({sync['provider']}, {sync['status']}, {sync['sync_frequency']})",
        f"health: {health['status']}   initial backfill: {backfill}",
    ]
    if health.get("last_error"):
        lines.append(f"last error ({health['last_error_at']}): {health['last_error']}")
    lines.append("")
    lines.append(f"{'COLLECTION':<24} {'BACKFILL':<10} {'RECORDS':>9} {'PER S':>7}  {'HEALTH':<9} LAST PASS")
    for p in sync["progress"]:
        rate = rates.get(p["collection_id"])
        lines.append(
            f"{p['collection_id']:<24} {p['backfill_state']:<10} {p['records_synced']:>9,} "
            f"{'' if rate is None else f'{rate:.0f}':>7}  {p['health']:<9} {p['last_synced_at'] or '-'}"
        )
        if p["health"] != "healthy" and p["last_error"]:
            lines.append(f"    {p['last_error']}")
    return "\n".join(lines)


def watch_sync(sync_id: str, url: str, token: str, interval: float, once: bool) -> int:
    """Polls GET /v1/syncs/ID and redraws its progress until Ctrl-C (or once)."""
    before: tuple[float, dict[str, int]] | None = None
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=10) as http:
        while True:
            response = http.get(f"/v1/syncs/{sync_id}")
            if response.status_code != 200:
                print(f"headwater: {response.json().get('error', response.text)}", file=sys.stderr)
                return 1
            sync, now = response.json(), time.monotonic()
            counts = {p["collection_id"]: p["records_synced"] for p in sync["progress"]}
            rates = {}
            if before is not None:
                elapsed = now - before[0]
                rates = {c: (n - before[1].get(c, 0)) / elapsed for c, n in counts.items()}
            before = (now, counts)
            screen = render_sync(sync, rates)
            if once:
                print(screen)
                return 0
            print(("\x1b[H\x1b[2J" if sys.stdout.isatty() else "") + screen + "\n", flush=True)
            time.sleep(interval)


def _utc(value: datetime.datetime | None) -> str | None:
    """A stored (naive UTC) time as `2026-12-01T09:50:12Z`."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def print_list(rows: list, columns: dict[str, str], as_json: bool) -> None:
    """Rows (dataclasses or dicts) as a table (`columns`: field -> heading) or as a JSON array of
    their fields."""
    records = [
        {k: _utc(v) if isinstance(v, datetime.datetime) else v
         for k, v in (row if isinstance(row, dict) else dataclasses.asdict(row)).items()}
        for row in rows
    ]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    cells = [list(columns.values())]
    cells += [["never" if r[f] is None else str(r[f]) or "-" for f in columns] for r in records]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


ORG_COLUMNS = {"name": "NAME", "id": "ID", "created_at": "CREATED", "tokens": "TOKENS"}
TOKEN_COLUMNS = {"id": "ID", "name": "NAME", "org": "ORGANISATION", "created_at": "CREATED", "last_used_at": "LAST USED"}


class RestError(Exception):
    """A REST answer other than 200: its error message."""


def _get(http: httpx.Client, path: str, **params) -> dict:
    response = http.get(path, params=params)
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = f"HTTP {response.status_code}"
        raise RestError(message)
    return response.json()


def _every(http: httpx.Client, path: str) -> list[dict]:
    """Every object of a REST list, page after page."""
    found, token = [], ""
    while True:
        page = _get(http, path, page_size=1000, **({"page_token": token} if token else {}))
        found += page["data"]
        token = page["next_page_token"]
        if not token:
            return found


def _budget(http: httpx.Client, credential_id: str) -> dict | None:
    try:
        return _get(http, f"/v1/credentials/{credential_id}/budget")
    except RestError:  # the shared pacer unreachable: shown as unknown, as in the console
        return None


def listed_over_rest(what: str, url: str, token: str) -> tuple[list[dict], dict[str, str]]:
    """The rows and columns of `syncs list`, `credentials list` or `consumers list`."""
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
        if what == "syncs":
            return [console_rows.sync_row(s) for s in _every(http, "/v1/syncs")], console_rows.SYNC_COLUMNS
        if what == "credentials":
            found = _every(http, "/v1/credentials")
            return ([console_rows.credential_row(c, _budget(http, c["id"])) for c in found],
                    console_rows.CREDENTIAL_COLUMNS)
        return [console_rows.consumer_row(c) for c in _every(http, "/v1/http-consumers")], console_rows.CONSUMER_COLUMNS


def _add_rest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("HEADWATER_URL", "http://127.0.0.1:8080"),
                        help="Headwater's REST address ($HEADWATER_URL)")
    parser.add_argument("--token", default=os.environ.get("HEADWATER_TOKEN"), help="an API token ($HEADWATER_TOKEN)")


async def _with_store(settings: Settings, fn):
    store = Store.open(settings.database_url)
    try:
        await store.migrate()
        return await fn(Auth(store))
    finally:
        await store.close()


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more, not {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headwater", description="Self-hostable integration gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="serve gRPC and REST")
    serve_command.add_argument("--workers", type=_positive, metavar="N",
                               help="server processes behind the same addresses ($HEADWATER_WORKERS, default 1); "
                                    "more than 1 needs PostgreSQL and HEADWATER_REDIS_URL")
    orgs = commands.add_parser("orgs", help="organisations").add_subparsers(dest="action", required=True)
    orgs.add_parser("create", help="create an organisation").add_argument("name")
    list_orgs = orgs.add_parser("list", help="list the organisations and how many tokens each has")
    list_orgs.add_argument("--json", action="store_true", help="a JSON array rather than a table")
    tokens = commands.add_parser("tokens", help="API tokens").add_subparsers(dest="action", required=True)
    create_token = tokens.add_parser("create", help="issue an API token (printed once)")
    create_token.add_argument("--org", required=True, help="the organisation's name")
    create_token.add_argument("--name", default="", help="a label for the token")
    list_tokens = tokens.add_parser("list", help="list API tokens: id, name, organisation, created, last used")
    list_tokens.add_argument("--org", help="only this organisation's (its name)")
    list_tokens.add_argument("--json", action="store_true", help="a JSON array rather than a table")
    revoke_token = tokens.add_parser("revoke", help="revoke an API token: running servers refuse it within 2 s")
    revoke_token.add_argument("id", help="the token's id (from tokens list)")
    syncs = commands.add_parser("syncs", help="syncs").add_subparsers(dest="action", required=True)
    watch = syncs.add_parser("watch", help="show a sync's progress, live")
    watch.add_argument("id")
    _add_rest_options(watch)
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    watch.add_argument("--once", action="store_true", help="print once and exit")
    credentials = commands.add_parser("credentials", help="credentials").add_subparsers(dest="action", required=True)
    consumers = commands.add_parser("consumers", help="consumers").add_subparsers(dest="action", required=True)
    for group, what, columns in ((syncs, "syncs", "health, backfill, records, last pass"),
                                 (credentials, "credentials", "health, budget used"),
                                 (consumers, "consumers", "pending, ack pending, parked")):
        listing = group.add_parser("list", help=f"list the token's organisation's {what}: {columns}")
        _add_rest_options(listing)
        listing.add_argument("--json", action="store_true", help="a JSON array rather than a table")
    args = parser.parse_args(argv)
    if args.command in ("syncs", "credentials", "consumers"):
        if not args.token:
            parser.error(f"{args.command} {args.action} needs --token or $HEADWATER_TOKEN")
        try:
            if args.action == "watch":
                return watch_sync(args.id, args.url, args.token, args.interval, args.once)
            found, columns = listed_over_rest(args.command, args.url, args.token)
            print_list(found, columns, args.json)
            return 0
        except KeyboardInterrupt:
            return 0
        except RestError as exc:
            print(f"headwater: {exc}", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            print(f"headwater: cannot reach {args.url}: {exc}", file=sys.stderr)
            return 1

    logs.configure()
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            if args.workers is not None:
                settings = dataclasses.replace(settings, workers=args.workers)
            # None unless OTEL_TRACES_EXPORTER names an exporter; with workers, each configures its own.
            provider = tracing.configure() if settings.workers == 1 else None
            try:
                asyncio.run(serve(settings))
            finally:
                if provider is not None:
                    provider.shutdown()  # the spans still queued are exported
        elif (args.command, args.action) == ("orgs", "create"):
            org = asyncio.run(_with_store(settings, lambda auth: auth.create_org(args.name)))
            print(f"created organisation {org.name!r} ({org.id})")
        elif (args.command, args.action) == ("orgs", "list"):
            print_list(asyncio.run(_with_store(settings, Auth.list_orgs)), ORG_COLUMNS, args.json)
        elif (args.command, args.action) == ("tokens", "create"):
            token = asyncio.run(_with_store(settings, lambda auth: auth.issue_token(args.org, args.name)))
            print(token)
        elif (args.command, args.action) == ("tokens", "list"):
            rows = asyncio.run(_with_store(settings, lambda auth: auth.list_tokens(args.org)))
            print_list(rows, TOKEN_COLUMNS, args.json)
        elif (args.command, args.action) == ("tokens", "revoke"):
            asyncio.run(_with_store(settings, lambda auth: auth.revoke_token(args.id)))
            print(f"revoked API token {args.id} (running servers refuse it within {Auth.CACHE_SECONDS:g} s)")
    except (ConfigError, LookupError) as exc:
        print(f"headwater: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except (CannotListen, CannotRunWorkers) as exc:
        print(f"headwater: {exc}", file=sys.stderr)
        return 1
    except IntegrityError:
        print(f"headwater: an organisation named {args.name!r} already exists", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
