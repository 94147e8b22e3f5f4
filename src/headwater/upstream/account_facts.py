"""What a connection learns of the account besides its tokens: the facts its token answer holds
(the catalogue's `oauth.account_properties`: Salesforce's `instance_url`) and those the provider's
follow-up requests answer (`oauth.account_requests`: HubSpot's `hub_id`, GitHub's `login`). Both
are kept on the credential, in the clear, beside its tokens.

    facts = account_properties(provider.oauth, token)                      # from the token answer
    facts |= await asked_facts(upstream, account, provider.oauth.account_requests, seconds=15)

A follow-up request goes through the upstream pipeline like every call (`Upstream.send`: the
credential's auth, the SSRF guard, the size limit, a timeout); one that fails, or whose answer
lacks a fact it must give, raises AccountFactsFailed. Answers are read for their facts alone and
never logged: some repeat the token (HubSpot's metadata does).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from headwater.errors import ApiError
from headwater.upstream.accounts import UpstreamAccount
from headwater.upstream.catalogue import PLACEHOLDER, AccountRequest, OAuthSpec
from headwater.upstream.reading import dig
from headwater.upstream.requests import UnsafeRequest

if TYPE_CHECKING:  # not at run time: the gateway imports the refresh, which imports this module
    from headwater.upstream.gateway import Upstream


class AccountFactsFailed(Exception):
    """A follow-up request gave no facts: the message says which request and why (a status, a
    missing field), never a token nor the answer."""


def facts_at(answer: Any, paths: dict[str, str]) -> dict:
    """The properties whose `paths` (dotted; a number indexes a list) hold a string or a number.

        facts_at({"team": {"id": "T1"}, "sites": [{"id": "c1"}]}, {"team_id": "team.id", "site": "sites.0.id"})
        # {"team_id": "T1", "site": "c1"}
    """
    found = {}
    for name, path in paths.items():
        value = dig(answer, path)
        if isinstance(value, str | int | float) and value != "":
            found[name] = value
    return found


def account_properties(oauth: OAuthSpec | None, answer: dict) -> dict:
    """The facts a token answer holds (`oauth.account_properties`), those it gives."""
    return facts_at(answer, oauth.account_properties) if oauth else {}


def _filled(text: str, known: dict, encode) -> str:
    return PLACEHOLDER.sub(lambda match: encode(str(known[match.group(1)])), text)


async def asked_facts(upstream: Upstream, account: UpstreamAccount, requests: tuple[AccountRequest, ...],
                      seconds: float) -> dict:
    """The facts `requests` answer, asked in order as `account` (the new credential, not stored
    yet), each within `seconds`; AccountFactsFailed as soon as one fails."""
    from headwater.upstream.gateway import UpstreamCall  # at run time only: see the import of Upstream above

    facts: dict = {}
    for request in requests:
        known = {**account.properties, **facts}
        if missing := sorted(request.placeholders - set(known)):
            raise AccountFactsFailed(f"{request} needs {', '.join(missing)}, which the connection did not give")
        path = _filled(request.path, known, lambda value: quote(value, safe=""))
        query = urlencode({name: _filled(value, known, str) for name, value in request.query.items()})
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            sent = await upstream.send(account, UpstreamCall(method=request.method, path=path, query=query,
                                                             deadline=deadline))
        except UnsafeRequest as unsafe:
            raise AccountFactsFailed(f"{request} cannot be sent: {unsafe}") from None
        except ApiError as failed:  # its message names the API, never the URL
            raise AccountFactsFailed(f"{request}: {failed.message}") from None
        status = sent.response.status
        if not 200 <= status < 300:
            raise AccountFactsFailed(f"{request} answered HTTP {status}")
        try:
            answer = json.loads(sent.response.body)
        except ValueError:
            raise AccountFactsFailed(f"the answer to {request} is not JSON") from None
        found = facts_at(answer, request.properties)
        if lacking := [path for name, path in request.properties.items()
                       if name not in found and name not in request.optional]:
            raise AccountFactsFailed(f"the answer to {request} lacks {', '.join(lacking)}")
        facts |= found
    return facts
