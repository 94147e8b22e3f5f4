"""`python -m headwater.rest OUT.json`: write the REST bridge's OpenAPI document (`make gen`)."""

import asyncio
import sys

from headwater.rest.openapi import generate

if len(sys.argv) != 2:
    sys.exit("usage: python -m headwater.rest OUT.json")
asyncio.run(generate(sys.argv[1]))
