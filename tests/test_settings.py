"""Settings come from the environment; a bad value stops the server with a message naming it."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from headwater.settings import ConfigError, Settings


def settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"HEADWATER_DATA_DIR": str(tmp_path), **env})


def test_with_nothing_set_it_serves_sqlite_with_a_generated_key(tmp_path):
    s = settings(tmp_path)

    assert s.database_url == f"sqlite:///{tmp_path / 'headwater.db'}"
    Fernet(s.secret_key)  # a usable key, kept beside the database
    assert settings(tmp_path).secret_key == s.secret_key
    assert (s.grpc_address, s.http_address, s.redis_url) == ("127.0.0.1:50051", "127.0.0.1:8080", None)
    assert s.pacing_margin == 0.02


def test_the_pacing_margin_is_given_in_milliseconds_and_may_be_zero(tmp_path):
    assert settings(tmp_path, HEADWATER_PACING_MARGIN_MS="50").pacing_margin == 0.05
    assert settings(tmp_path, HEADWATER_PACING_MARGIN_MS="0").pacing_margin == 0.0


def test_rest_connection_limits_come_from_the_environment(tmp_path):
    default = settings(tmp_path)
    chosen = settings(tmp_path, HEADWATER_HTTP_HEADER_TIMEOUT="5", HEADWATER_HTTP_IDLE_TIMEOUT="300",
                      HEADWATER_HTTP_MAX_CONNECTIONS="2000")

    assert (default.http_header_timeout, default.http_idle_timeout, default.http_max_connections) == (10, 75, 10_000)
    assert (chosen.http_header_timeout, chosen.http_idle_timeout, chosen.http_max_connections) == (5, 300, 2000)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HEADWATER_PACING_MARGIN_MS", "-5"),
        ("HEADWATER_PACING_MARGIN_MS", "0.5"),
        ("HEADWATER_SYNC_INTERVAL", "soon"),
        ("HEADWATER_SYNC_WORKERS", "0"),
        ("HEADWATER_HTTP_HEADER_TIMEOUT", "0"),
        ("HEADWATER_HTTP_MAX_CONNECTIONS", "many"),
        ("HEADWATER_ALLOW_PRIVATE_NETWORKS", "maybe"),
        ("HEADWATER_SECRET_KEY", "not-a-fernet-key"),
        ("HEADWATER_PUBLIC_URL", "headwater.example.com"),
        ("HEADWATER_PUBLIC_URL", "https://headwater.example.com/?x=1"),
        ("HEADWATER_CONNECT_SESSION_SECONDS", "0"),
        ("HEADWATER_TRACE_PROPAGATE_UPSTREAM", "sometimes"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(tmp_path, name, value):
    with pytest.raises(ConfigError) as refused:
        settings(tmp_path, **{name: value})

    assert name in str(refused.value)


def test_the_public_url_is_where_browsers_reach_the_rest_front(tmp_path):
    assert settings(tmp_path).public_url is None  # the bound REST address
    assert settings(tmp_path, HEADWATER_PUBLIC_URL="https://hw.example.com/gateway/").public_url == (
        "https://hw.example.com/gateway")
    assert settings(tmp_path, HEADWATER_CONNECT_SESSION_SECONDS="600").connect_session_seconds == 600


def test_traceparent_goes_upstream_only_when_the_operator_says_so(tmp_path):
    assert settings(tmp_path).trace_propagate_upstream is False
    assert settings(tmp_path, HEADWATER_TRACE_PROPAGATE_UPSTREAM="true").trace_propagate_upstream is True


def test_postgresql_needs_a_secret_key_from_the_environment(tmp_path):
    with pytest.raises(ConfigError, match="HEADWATER_SECRET_KEY"):
        settings(tmp_path, HEADWATER_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test")


# --- The instance's default OAuth apps (HEADWATER_OAUTH_APPS) -------------------------------------

GITHUB_APP = {"client_id": "Iv1.instance", "client_secret": "instance-secret", "scopes": ["repo", "read:user"]}


def test_the_instances_oauth_apps_are_read_from_json_or_from_a_file(tmp_path):
    apps_file = tmp_path / "oauth-apps.json"
    apps_file.write_text(json.dumps({"github": GITHUB_APP}))

    inline = settings(tmp_path, HEADWATER_OAUTH_APPS=json.dumps({"github": GITHUB_APP})).oauth_apps
    from_file = settings(tmp_path, HEADWATER_OAUTH_APPS=str(apps_file)).oauth_apps

    assert inline == from_file
    github = inline["github"]
    assert (github.provider, github.client_id, github.client_secret) == ("github", "Iv1.instance", "instance-secret")
    assert github.scopes == ("repo", "read:user") and github.token_url is None
    assert settings(tmp_path).oauth_apps == {}


def test_the_instances_client_secrets_never_show_in_the_settings_repr(tmp_path):
    shown = repr(settings(tmp_path, HEADWATER_OAUTH_APPS=json.dumps({"github": GITHUB_APP})))

    assert "Iv1.instance" in shown and "instance-secret" not in shown


@pytest.mark.parametrize("value, why", [
    ("{not json", "JSON"),
    ("/no/such/file.json", "/no/such/file.json"),
    ('["github"]', "provider"),
    (json.dumps({"github": {"client_id": "x"}}), "github.client_secret"),
    (json.dumps({"github": {**GITHUB_APP, "colour": "red"}}), "colour"),
    (json.dumps({"github": {**GITHUB_APP, "scopes": "repo"}}), "github.scopes"),
    (json.dumps({"github": {**GITHUB_APP, "token_url": "ftp://x"}}), "github.token_url"),
])
def test_a_malformed_instance_oauth_app_is_refused_naming_the_variable(tmp_path, value, why):
    with pytest.raises(ConfigError) as refused:
        settings(tmp_path, HEADWATER_OAUTH_APPS=value)

    assert "HEADWATER_OAUTH_APPS" in str(refused.value) and why in str(refused.value)
    assert "instance-secret" not in str(refused.value)
