"""Stateful emulators of the providers Headwater syncs: real HTTP servers for tests.

Each emulator is an ASGI app served by uvicorn on 127.0.0.1 (port 0) in the test's event loop. It
keeps its objects in memory and answers the calls Headwater makes the way the provider does: the
same paths, request encodings, response shapes, status codes, paging and error bodies (checked
against the providers' API references and /work/shared/upstream-specs/). Read a provider's class to
learn what its API does; tests/test_fake_providers.py and tests/test_sync_providers.py show the calls.

The package: `core.py` is what every emulator shares (records, serving, failures, rate limits,
the paging styles); one module per provider holds its routes, shapes and errors.

    fake = await start_fake_provider("stripe")      # a key of PROVIDERS: "stripe", "salesforce", "zendesk", ...
    fake.base_url, fake.token                        # a credential with properties.base_url = fake.base_url
    fake.credential_properties(fake.token)           # (the newer emulators) a credential's properties for it
    fake.seed("customers", n=3, email=lambda i: f"u{i}@example.com")   # -> the 3 objects, as the API shows them
    fake.objects("customers")                        # {id: object} of the live objects
    fake.get("customers", id), fake.put("customers", {"id": id, "name": "New"}), fake.delete("customers", id)
    fake.deleted("customers")                        # ids deleted so far, oldest first
    fake.fail_next(429, retry_after=2)               # the next request answers 429 in the provider's shape
    fake.limit(100, window=10)                       # its rate limit: budget headers on every answer, and
                                                     # the provider's rate-limited answer over it
    fake.delay = 2.0                                 # every answer comes 2 s late (the request still takes effect)
    fake.requests                                    # what arrived (emulators.Received, with .at = when)
    await fake.close()

Run as a program, it serves Stripe, Salesforce, HubSpot and GitHub with a few records each, for the
README's examples:

    eval "$(.venv/bin/python tests/fakes --background)"   # sets STRIPE_URL, STRIPE_KEY, ...
    kill $FAKE_PROVIDERS_PID

Collections are named as the API names them: Stripe "customers" / "subscriptions" / "invoices",
Salesforce "Contact" / "Account" / "Task", HubSpot "contacts" / "companies" / "deals", GitHub
"owner/repo" (that repository's issues), and the plural of the newer ones' catalogue keys (Zendesk
"tickets", Linear "issues", Shopify "products", ...). The catalogue's keys work too ("customer",
"contact", "issue"; GitHub's "issue" is the repository `fake.repo`).

`seed` writes behind the API's back (no validation) and dates the objects as history: one second
apart, the last one `at` (a datetime or epoch seconds; default now). `put` merges fields into an
object (creating it under that id if missing) as an update would, `delete` removes it as the API's
delete would (Stripe subscriptions are canceled); both bump the modified time and leave the same
traces the API would (Stripe events, Salesforce's deleted list, HubSpot's archive, Zendesk's and
Linear's tombstones, Shopify's destroy events, Pipedrive's deleted deals).

Times: every change after seeding gets a strictly increasing millisecond timestamp, rendered in each
provider's own resolution (Stripe and GitHub: seconds, so changes within one second tie, as they do
for real).
"""

from __future__ import annotations

from fakes.airtable import AirtableFake
from fakes.asana import AsanaFake
from fakes.core import Answer, FakeProvider, Item, MemoryStore, Reject, parse_iso, query_params
from fakes.github import GitHubFake
from fakes.greenhouse import GreenhouseFake
from fakes.hubspot import HubSpotFake
from fakes.intercom import IntercomFake
from fakes.linear import LinearFake
from fakes.notion import NotionFake
from fakes.pipedrive import PipedriveFake
from fakes.salesforce import SalesforceFake
from fakes.shopify import ShopifyFake
from fakes.stripe import StripeFake, decode_stripe_form
from fakes.zendesk import ZendeskFake

PROVIDERS: dict[str, type[FakeProvider]] = {
    "stripe": StripeFake, "salesforce": SalesforceFake, "hubspot": HubSpotFake, "github": GitHubFake,
    "zendesk": ZendeskFake, "shopify": ShopifyFake, "linear": LinearFake,
    "pipedrive": PipedriveFake, "asana": AsanaFake, "intercom": IntercomFake,
    "notion": NotionFake, "airtable": AirtableFake, "greenhouse": GreenhouseFake,
}


async def start_fake_provider(name: str) -> FakeProvider:
    """Start the emulator of `name` (a key of PROVIDERS) on 127.0.0.1."""
    fake = PROVIDERS[name]()
    await fake.start()
    return fake


__all__ = ["PROVIDERS", "Answer", "FakeProvider", "Item", "MemoryStore", "Reject", "decode_stripe_form",
           "parse_iso", "query_params", "start_fake_provider"]
