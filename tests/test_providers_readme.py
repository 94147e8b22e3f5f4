"""README.md's provider table is the catalogue's: regenerated, it is what README.md holds."""

from __future__ import annotations

from pathlib import Path

from headwater.upstream import provider_table
from headwater.upstream.catalogue import ProviderCatalogue

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readmes_provider_table_is_the_catalogues():
    readme = README.read_text()

    regenerated = provider_table.with_table(readme, ProviderCatalogue.default())

    assert regenerated == readme, f"README.md's provider table is stale: run {provider_table.COMMAND} and commit"


def test_the_table_has_a_row_per_provider_saying_how_it_authenticates():
    rows = provider_table.table(ProviderCatalogue.default()).splitlines()[2:]

    assert len(rows) == len(ProviderCatalogue.default().providers) >= 40
    shopify = next(row for row in rows if row.startswith("| `shopify` "))
    assert "header `X-Shopify-Access-Token`" in shopify and "`shop`" in shopify and "| no |" in shopify
    assert "| yes, PKCE, scopes `,` |" in next(row for row in rows if row.startswith("| `slack` "))
