"""Serving the fake providers as a program: the README's examples without provider accounts.

    eval "$(.venv/bin/python tests/fakes --background)"   # sets STRIPE_URL, STRIPE_KEY, ...
    kill $FAKE_PROVIDERS_PID
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python tests/fakes`: tests/ holds the modules it imports
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulators import serve_in_background, serve_until_stopped  # noqa: E402
from fakes import start_fake_provider  # noqa: E402

# provider -> (the shell variables of its URL and its key, the collection seeded, as the README uses them)
DEMO = {
    "stripe": ("STRIPE_URL", "STRIPE_KEY", "customers"),
    "salesforce": ("SALESFORCE_URL", "SALESFORCE_TOKEN", "Contact"),
    "hubspot": ("HUBSPOT_URL", "HUBSPOT_TOKEN", "contacts"),
    "github": ("GITHUB_URL", "GITHUB_TOKEN", "issue"),
}


async def serve_demo(ready) -> None:
    """Serves every fake provider with 3 records each until SIGINT or SIGTERM; calls
    `ready(lines)` with the shell assignments of their URLs and keys once they listen."""
    fakes = []

    async def start() -> list[str]:
        lines = []
        for name, (url_variable, key_variable, collection) in DEMO.items():
            fake = await start_fake_provider(name)
            fakes.append(fake)
            fake.seed(collection, n=3)
            lines += [f"export {url_variable}={shlex.quote(fake.base_url)}",
                      f"export {key_variable}={shlex.quote(fake.token)}"]
        return lines

    await serve_until_stopped(start, ready)
    for fake in fakes:
        await fake.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve fake Stripe, Salesforce, HubSpot and GitHub APIs on loopback ports, 3 records each; "
                    "print the shell variables of their URLs and keys.")
    parser.add_argument("--background", action="store_true",
                        help="serve from a background process and return; also print FAKE_PROVIDERS_PID")
    args = parser.parse_args(argv)
    if not args.background:
        asyncio.run(serve_demo(lambda lines: print(*lines, sep="\n", flush=True)))
        return 0
    return serve_in_background(serve_demo, "FAKE_PROVIDERS_PID")


if __name__ == "__main__":
    sys.exit(main())
