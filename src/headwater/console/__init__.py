"""The web console at `/console`: syncs, credentials, consumers and recent upstream calls of the
signed-in API token's organisation, server-rendered (jinja2), no JavaScript needed.

`rows` holds what each list shows (the console's tables and `headwater ... list` alike), `session`
the sign-in cookie and CSRF tokens, `charts` the inline SVG of a credential's last hour, `pages` the
routes (raw routes of the REST bridge) that read through the same servicers the API runs.
"""
