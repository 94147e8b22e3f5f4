"""Connecting end users' accounts: connect sessions (`sessions`), the hosted page's flow from the
session's token to the credential (`flow`), and its HTML (`pages`, `templates/`)."""
