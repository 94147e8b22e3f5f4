"""Official SDKs from PyPI, pointed at Headwater's proxy URL, complete calls against emulators.

The emulators are Prism (npm @stoplight/prism-cli) serving the providers' own API descriptions
in tests/upstream-specs/. Prism answers 401 when the credential of the declared scheme is
missing, so a passing call also shows that Headwater injected the credential's auth: the SDKs
only ever hold a Headwater token.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from test_syncs import make_stream

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "tests" / "upstream-specs"  # see its README
PRISM_DIR = ROOT / "build" / "prism"  # ignored by git
PRISM = PRISM_DIR / "node_modules" / ".bin" / "prism"

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def install_prism() -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the SDK tests serve the providers' API descriptions with Prism")
    if not PRISM.exists():
        PRISM_DIR.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(PRISM_DIR),
             "@stoplight/prism-cli@5"],
            capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            pytest.skip(f"npm could not install Prism: {result.stderr[-500:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_prism(spec: str) -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "-v", "error", str(SPECS / spec),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(300):  # Prism takes 1 to 6 s to start
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return f"http://127.0.0.1:{port}", proc
        except OSError:
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"Prism did not start for {spec}")


@pytest.fixture(scope="module")
async def prisms():
    await asyncio.to_thread(install_prism)
    started = dict(zip(
        ("stripe", "slack", "hubspot"),
        await asyncio.gather(
            start_prism("stripe-2023-customers-subset.json"),
            start_prism("slack-chat-postmessage.json"),
            start_prism("hubspot-crm-contacts-v3.clean.json"),
        ),
    ))
    yield {name: url for name, (url, _) in started.items()}
    for _, proc in started.values():
        proc.kill()
        await proc.wait()


async def proxy_prefix(client, provider: str, kind: str, secret: dict, base_url: str) -> str:
    stream_id = await make_stream(client, f"s-{uuid.uuid4().hex[:8]}")
    response = await client.rest.post("/v1/syncs", json={
        "provider": provider, "stream_id": stream_id,
        "collection_ids": [f"{provider}:{'customer' if provider == 'stripe' else 'contact'}"]
        if provider != "slack" else ["slack:channel"],
        "credential": {"properties": {"kind": kind, "base_url": base_url, **secret}},
    })
    assert response.status_code == 200, response.text
    return f"{client.rest.base_url}/v1/proxy/sync/{response.json()['id']}"


async def test_stripe_sdk_lists_and_creates_customers_through_the_proxy(client, prisms):
    import stripe

    prefix = await proxy_prefix(client, "stripe", "stripe_api_key", {"secret": "sk_test_emulated"}, prisms["stripe"])
    sdk = stripe.StripeClient(client.token, base_addresses={"api": prefix}, max_network_retries=0)

    customers = await asyncio.to_thread(sdk.v1.customers.list, {"limit": 3})
    created = await asyncio.to_thread(sdk.v1.customers.create, {"email": "paul@arrakis.org"})

    assert customers.object == "list"
    assert created.object == "customer"


async def test_slack_sdk_posts_a_message_through_the_proxy(client, prisms):
    from slack_sdk import WebClient

    prefix = await proxy_prefix(client, "slack", "slack_oauth2", {"access_token": "xoxb-emulated"}, prisms["slack"])
    sdk = WebClient(token=client.token, base_url=prefix + "/")

    answer = await asyncio.to_thread(sdk.chat_postMessage, channel="C123", text="Hello from Headwater")

    assert answer["ok"] is True


async def test_hubspot_sdk_pages_contacts_through_the_proxy(client, prisms):
    from hubspot import HubSpot

    prefix = await proxy_prefix(client, "hubspot", "hubspot_private_app", {"access_token": "pat-emulated"},
                                prisms["hubspot"])
    sdk = HubSpot(access_token=client.token, host=prefix)

    page = await asyncio.to_thread(sdk.crm.contacts.basic_api.get_page, limit=5)

    assert page.results is not None
