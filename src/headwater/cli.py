"""The `headwater` command.

    headwater serve                      # gRPC and REST from one process (what `make run` does)
    headwater orgs create NAME           # a new organisation
    headwater tokens create --org NAME   # a new API token for it, printed once
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from peewee import IntegrityError

from headwater.auth import Auth
from headwater.server import Server
from headwater.settings import ConfigError, Settings
from headwater.store import Store


async def serve(settings: Settings) -> None:
    server = await Server.start(settings)
    token = await Auth(server.store).bootstrap()
    print(f"Headwater serving gRPC on {settings.grpc_address.rsplit(':', 1)[0]}:{server.grpc_port}"
          f" and REST on http://{settings.http_address.rsplit(':', 1)[0]}:{server.http_port}", flush=True)
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


async def _with_store(settings: Settings, fn):
    store = Store.open(settings.database_url)
    try:
        await store.migrate()
        return await fn(Auth(store))
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headwater", description="Self-hostable integration gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve gRPC and REST")
    orgs = commands.add_parser("orgs", help="organisations").add_subparsers(dest="action", required=True)
    orgs.add_parser("create", help="create an organisation").add_argument("name")
    tokens = commands.add_parser("tokens", help="API tokens").add_subparsers(dest="action", required=True)
    create_token = tokens.add_parser("create", help="issue an API token (printed once)")
    create_token.add_argument("--org", required=True, help="the organisation's name")
    create_token.add_argument("--name", default="", help="a label for the token")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            asyncio.run(serve(settings))
        elif args.command == "orgs":
            org = asyncio.run(_with_store(settings, lambda auth: auth.create_org(args.name)))
            print(f"created organisation {org.name!r} ({org.id})")
        elif args.command == "tokens":
            token = asyncio.run(_with_store(settings, lambda auth: auth.issue_token(args.org, args.name)))
            print(token)
    except (ConfigError, LookupError) as exc:
        print(f"headwater: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except IntegrityError:
        print(f"headwater: an organisation named {args.name!r} already exists", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
