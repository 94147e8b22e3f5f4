"""README.md's examples run as written, in the order given, so that the README cannot drift.

Every ```sh block runs, in order, in one bash session (`set -euo pipefail`), so a variable one
block sets is there for the next, as in the reader's terminal; a ```python block runs in that
session with `.venv/bin/python`. They run against a real `headwater serve` (what `make run`
starts) with HEADWATER_ALLOW_PRIVATE_NETWORKS=true, on free ports (each 127.0.0.1:8080 and
127.0.0.1:50051 in the examples, and the CLI's default, becomes the server's address), from a directory that is a fresh
checkout as far as the examples can tell: the repository's `.venv`, `tests` and `build`, and an
empty `data/` (the server's new SQLite database). The providers are the README's own
"without accounts" step: the fake providers of tests/fakes/, on loopback.

Not run: a block whose line above says `<!-- not run by tests/test_readme.py: WHY -->` (it
serves until Ctrl-C, or runs the suite), and one that uses build/tools when `make lint` has not
installed it there.

Every block must exit 0, set every id it picks out of an answer (`NAME=$(...)`) to something
other than "" or "null", and print no error body; the tests below check each section's answers.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_RUN = re.compile(r"<!-- not run by tests/test_readme\.py: (.+?) -->")
PICKED = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=\$\(", re.MULTILINE)  # NAME=$(...)
ERROR_BODY = re.compile(r'"error"\s*:')
README_ADDRESSES = ("127.0.0.1:8080", "127.0.0.1:50051")


@dataclass
class Block:
    language: str  # sh | python
    code: str
    section: str  # the heading it sits under
    not_run_because: str | None

    @property
    def needs_make_lint(self) -> bool:
        return "build/tools/" in self.code


@dataclass
class Ran:
    block: Block
    status: int | None  # None: not reached, because an earlier block failed
    out: str = ""
    err: str = ""
    picked: dict[str, str] | None = None


def readme_blocks(text: str) -> list[Block]:
    """The ```sh and ```python blocks of the README, in order, with the heading each is under."""
    blocks, section, previous, lines = [], "", "", iter(text.splitlines())
    for line in lines:
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line in ("```sh", "```python"):
            code = []
            for inner in lines:
                if inner == "```":
                    break
                code.append(inner)
            skip = NOT_RUN.fullmatch(previous.strip())
            blocks.append(Block(line[3:], "\n".join(code) + "\n", section, skip and skip.group(1)))
        if line.strip():
            previous = line
    return blocks


def session_script(blocks: list[Block], results: Path) -> str:
    """One bash script running the blocks in order; each one's output goes to results/N.out and
    N.err, the variables it picked to N.picked, and its number to `progress` before it starts."""
    parts = ["set -euo pipefail", f"exec 3>{results / 'progress'}"]
    for n, block in enumerate(blocks):
        code = block.code
        if block.language == "python":
            code = f".venv/bin/python - <<'README_PYTHON'\n{code}README_PYTHON\n"
        parts.append(f"echo {n} >&3\n{{\n{code}}} >{results / f'{n}.out'} 2>{results / f'{n}.err'}")
        for name in PICKED.findall(block.code):
            parts.append(f"printf '%s=%s\\n' {name} \"${{{name}-}}\" >>{results / f'{n}.picked'}")
    return "\n".join(parts) + "\n"


def fresh_checkout(path: Path) -> Path:
    """A directory the examples take for a fresh checkout after `make run` (and `make lint`)."""
    for name in (".venv", "tests", "build"):
        if (ROOT / name).exists():
            (path / name).symlink_to(ROOT / name)
    return path


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without its HEADWATER_ settings, plus `settings`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")} | settings


def start_headwater(checkout: Path) -> tuple[subprocess.Popen, list[str]]:
    """`headwater serve` as `make run` starts it, from the checkout; the lines it prints on start."""
    env = environment(HEADWATER_GRPC_ADDRESS="127.0.0.1:0", HEADWATER_HTTP_ADDRESS="127.0.0.1:0",
                      HEADWATER_ALLOW_PRIVATE_NETWORKS="true")
    with open(checkout / "headwater.log", "w") as log:
        # Unbuffered, so that waiting for a line on the pipe waits for exactly that line.
        server = subprocess.Popen([str(checkout / ".venv" / "bin" / "headwater"), "serve"], cwd=checkout, env=env,
                                  stdout=subprocess.PIPE, stderr=log, bufsize=0)
    printed = []
    for _ in range(3):
        if not select.select([server.stdout], [], [], 60)[0]:
            break  # a minute without a word: it will not start
        printed.append(server.stdout.readline().decode().rstrip("\n"))
    if len(printed) < 3 or not printed[0].startswith("Headwater serving"):
        server.kill()
        pytest.fail(f"headwater serve did not start: {printed} {(checkout / 'headwater.log').read_text()[-2000:]}")
    return server, printed


def run_session(blocks: list[Block], checkout: Path, results: Path, ports: dict[str, str]) -> list[Ran]:
    """Runs the blocks that can run here, in order, in one bash session; what each one did."""
    runnable = [n for n, b in enumerate(blocks)
                if b.not_run_because is None and not (b.needs_make_lint and not (ROOT / "build" / "tools").exists())]
    script = session_script([blocks[n] for n in runnable], results)
    for readme_address, port in zip(README_ADDRESSES, (ports["REST"], ports["gRPC"])):
        script = script.replace(readme_address, f"127.0.0.1:{port}")
    # The CLI's default REST address (`syncs watch`) is 127.0.0.1:8080 too.
    env = environment(HEADWATER_URL=f"http://127.0.0.1:{ports['REST']}")
    session = subprocess.Popen(["bash", "-c", script], cwd=checkout, env=env, start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = session.wait(timeout=240)
    except subprocess.TimeoutExpired:
        status = 124  # as timeout(1) says it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGTERM)  # what it left running: the fake providers
    progress = (results / "progress").read_text().split()
    reached = int(progress[-1]) if progress else -1  # the last block that started

    ran = [Ran(block, None) for block in blocks]
    for i, n in enumerate(runnable[: reached + 1]):
        picked = results / f"{i}.picked"
        ran[n] = Ran(
            blocks[n], status if i == reached else 0, (results / f"{i}.out").read_text(),
            (results / f"{i}.err").read_text(),
            dict(line.split("=", 1) for line in picked.read_text().splitlines()) if picked.exists() else {},
        )
    return ran


@dataclass
class ReadmeRun:
    printed: list[str]  # what `headwater serve` printed on start
    printed_token_answer: int  # the status of GET /v1/streams with the token it printed
    ran: list[Ran]

    def section(self, heading: str) -> list[Ran]:
        found = [r for r in self.ran if r.block.section == heading]
        assert found, f"no example under a heading {heading!r}"
        return found


@pytest.fixture(scope="module")
def readme(tmp_path_factory) -> ReadmeRun:
    missing = [tool for tool in ("bash", "curl", "jq", "openssl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the README's examples need {', '.join(missing)}: not installed (apt-get install -y jq)")
    if not (ROOT / ".venv" / "bin" / "headwater").exists():
        pytest.skip("the README's examples use .venv: run `make install` first")
    checkout = fresh_checkout(tmp_path_factory.mktemp("checkout"))
    server, printed = start_headwater(checkout)
    try:
        ports = dict(re.findall(r"(gRPC|REST) on (?:http://)?127\.0\.0\.1:(\d+)", printed[0]))
        token_answer = httpx.get(f"http://127.0.0.1:{ports['REST']}/v1/streams",
                                 headers={"authorization": f"Bearer {printed[2].strip()}"})
        blocks = readme_blocks((ROOT / "README.md").read_text())
        ran = run_session(blocks, checkout, tmp_path_factory.mktemp("results"), ports)
        return ReadmeRun(printed, token_answer.status_code, ran)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        server.stdout.close()


def test_every_example_runs_as_written_in_order(readme):
    for ran in readme.ran:
        if ran.block.not_run_because:
            continue
        where = f"the block under {ran.block.section!r}:\n{ran.block.code}"
        if ran.status is None and ran.block.needs_make_lint:
            continue  # no build/tools: `make lint` was not run here
        assert ran.status == 0, f"{where}\nexited {ran.status}:\n{ran.out[-3000:]}\n{ran.err[-3000:]}"
        for name, value in ran.picked.items():
            assert value not in ("", "null"), f"{where}\nset {name} to {value!r}:\n{ran.out[-3000:]}"
        assert not ERROR_BODY.search(ran.out), f"{where}\nanswered an error:\n{ran.out[-3000:]}"


def test_grpc_examples_list_the_services_and_python_sees_the_stream_grpcurl_made(readme):
    grpcurl, *buf, python = readme.section("Using it over gRPC")

    assert "headwater.v1.SyncService" in grpcurl.out.split()
    assert '"name": "from-grpc"' in grpcurl.out
    assert python.out == "['from-grpc']\n"


def test_buf_curl_lists_the_methods_once_make_lint_installed_it(readme):
    if not (ROOT / "build" / "tools").exists():
        pytest.skip("build/tools is absent: `make lint` installs buf there")
    (buf,) = [ran for ran in readme.section("Using it over gRPC") if ran.block.needs_make_lint]

    assert "headwater.v1.SyncService/CreateSync" in buf.out.split()


def test_the_proxy_examples_reach_the_providers_with_the_credentials_auth(readme):
    (proxy,) = readme.section("The proxy")

    assert '"email": "paul@arrakis.org"' in proxy.out  # Stripe made the customer
    assert '"title": "Issue 1"' in proxy.out  # GitHub listed the repository's issues


def test_a_connected_user_reads_their_own_salesforce_contacts(readme):
    (connected,) = readme.section("Connected users")

    assert '"external_id": "user-42"' in connected.out
    assert '{"totalSize": 3, "done": true, "records": [' in connected.out


def test_mutations_create_update_and_delete_a_salesforce_contact(readme):
    (mutations,) = readme.section("Mutations")

    assert mutations.picked["PAUL"].startswith("003")  # a Contact's id
    assert '"Title": "Duke"' in mutations.out and '"deleted": true' in mutations.out


def test_a_consumer_receives_the_syncs_changes_acks_and_nacks_them(readme):
    (consumers,) = readme.section("Consumers")

    assert '"acked": 2, "unknown_ack_tokens": []' in consumers.out
    assert '"nacked": 2, "unknown_ack_tokens": []' in consumers.out


def test_an_event_endpoint_hears_of_the_refused_refresh_in_posts_signed_with_its_secret(readme):
    (events,) = readme.section("Events")

    assert "HubSpot refused the credential's refresh token (HTTP 400); reconnect the account" in events.out
    assert '"status": "error"' in events.out  # the credential's health
    verified = [line for line in events.out.splitlines() if line.startswith('{"type":')]
    assert [line.split('"')[3] for line in verified] == ["credential.refresh_failed", "credential.health_changed"]


def test_only_what_serves_or_runs_the_suite_is_left_out(readme):
    reasons = [ran.block.not_run_because for ran in readme.ran if ran.block.not_run_because]

    assert reasons == ["it serves until Ctrl-C, then runs the suite (the test starts `headwater serve` itself)",
                       "it runs the whole suite", "it serves until Ctrl-C", "it serves until Ctrl-C"]


def test_make_run_prints_what_the_readme_shows(readme):
    shown = re.search(r"prints its first API token\s+once:\n\n```\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    token = readme.printed[2].strip()

    expected = shown.group(1).replace("127.0.0.1:8080", "127.0.0.1:REST").replace("127.0.0.1:50051", "127.0.0.1:GRPC")
    actual = re.sub(r"(REST on http://127\.0\.0\.1:)\d+", r"\1REST", re.sub(r"(gRPC on 127\.0\.0\.1:)\d+", r"\1GRPC",
                                                                        "\n".join(readme.printed)))
    assert actual + "\n" == expected.replace("hw_...", token)
    assert readme.printed_token_answer == 200


def test_make_test_says_that_redis_tests_skip_for_want_of_test_redis_url():
    env = {k: v for k, v in os.environ.items() if k != "TEST_REDIS_URL"}
    one_redis_test = "tests/test_pacer.py::test_never_more_than_n_starts_in_any_window_of_interval[redis]"

    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", one_redis_test],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout
    assert "TEST_REDIS_URL is not set" in run.stdout


def test_the_readme_runs_everything_as_ci_does():
    ci = (ROOT / ".ci" / "run").read_text()
    setup = (ROOT / "README.md").read_text().split("## Using it over REST")[0]

    for variable in re.findall(r"^export (TEST_\w+=\S+)", ci, re.MULTILINE):
        assert variable in setup
    assert re.search(r"^make .*$", ci, re.MULTILINE).group() in setup


def test_an_oauth_app_is_registered_a_credential_shows_it_and_it_is_not_deleted_while_named(readme):
    (apps,) = readme.section("OAuth apps")

    assert '"client_secret": "***********"' in apps.out and "ghs_app_secret" not in apps.out
    assert '"kind":"custom","provider":"github","client_id":"Iv1.8a61f9b3a7aba766"}\n' in apps.out
    assert "\n400\n" in apps.out  # the delete refused while the credential names the app
    assert apps.out.rstrip().endswith('"deleted": true}')


def test_an_end_user_connects_github_through_the_hosted_page_and_lands_on_the_redirect_url(readme):
    (connecting,) = readme.section("Connecting your users' accounts")

    assert connecting.picked["BACK"].startswith("http://localhost:3000/connected?integration=github&credential_id=")
    assert '"external_id":"user-7"' in connecting.out
    assert '"access_token":"***********"' in connecting.out and '"kind":"github_oauth2"' in connecting.out
    assert '"login":"user-1"' in connecting.out  # GitHub's `user` asked right after the exchange
    assert '{"account": "user-1", "client_id": "client-1", "scopes": ["repo"]}' in connecting.out  # GitHub's default scope
    credential_id = connecting.picked["BACK"].rpartition("=")[2]
    (told,) = [line for line in connecting.out.splitlines() if line.startswith('{"type":"connection.created"')]
    assert f'"credential_id":"{credential_id}"' in told and '"end_user_id":"user-7"' in told


def test_the_cli_lists_show_the_consoles_columns(readme):
    (lists,) = readme.section("Console")
    assert lists.status == 0, lists.err
    assert re.search(r"^ID +NAME +PROVIDER +STATUS +HEALTH +BACKFILL +RECORDS +LAST PASS$", lists.out, re.M), lists.out
    assert re.search(r"^ID +PROVIDER +NAME +EXTERNAL ID +HEALTH +BUDGET USED$", lists.out, re.M), lists.out
    assert re.search(r"^ID +NAME +KIND +STREAM +PENDING +ACK PENDING +PARKED$", lists.out, re.M), lists.out
    assert re.search(r'^\{"id":"[^"]+","health":"\w+","backfill":"[^"]+","records_synced":\d+\}$', lists.out, re.M), lists.out
