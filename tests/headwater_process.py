"""Headwater as users run it: `python -m headwater serve` in a subprocess, configured by
environment variables, on ephemeral ports; for tests of what survives a process's death.

    process = await Headwater.serve(database_url, secret_key, HEADWATER_ALLOW_PRIVATE_NETWORKS="true")
    process.url, process.grpc_target        # REST and gRPC
    await process.printed(r"serves again")  # waits for a line of its output (stdout and stderr)
    await process.kill()                    # kill -9
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

SERVING = re.compile(r"gRPC on [\d.]+:(\d+) and REST on http://[\d.]+:(\d+)")


class Headwater:
    """`headwater serve` in a subprocess on ephemeral ports."""

    def __init__(self, process: asyncio.subprocess.Process, grpc_port: int, http_port: int, output: bytes):
        self.process = process
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.url = f"http://127.0.0.1:{http_port}"
        self._output = bytearray(output)  # what it has printed so far, stdout and stderr
        self._reading = asyncio.get_running_loop().create_task(self._read())  # keep draining its output

    @classmethod
    async def serve(cls, database_url: str, secret_key: bytes, **env: str) -> Headwater:
        """Starts it and waits until it serves; `env` adds (or overrides) HEADWATER_* variables."""
        env = {
            **os.environ,
            "HEADWATER_DATABASE_URL": database_url,
            "HEADWATER_SECRET_KEY": secret_key.decode(),
            "HEADWATER_GRPC_ADDRESS": "127.0.0.1:0",
            "HEADWATER_HTTP_ADDRESS": "127.0.0.1:0",
            "HEADWATER_SYNC_ENGINE": "false",
            **env,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "headwater", "serve", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output = b""
        async with asyncio.timeout(30):
            while not (match := SERVING.search(output.decode(errors="replace"))):
                line = await process.stdout.readline()
                assert line, f"headwater serve exited: {output.decode(errors='replace')}"
                output += line
        return cls(process, int(match.group(1)), int(match.group(2)), output)

    async def _read(self) -> None:
        while chunk := await self.process.stdout.read(65536):
            self._output += chunk

    @property
    def output(self) -> str:
        """What it has printed so far, stdout and stderr."""
        return self._output.decode(errors="replace")

    async def printed(self, pattern: str, timeout: float = 30) -> re.Match:
        """The first match of `pattern` in its output, once it has printed it."""
        async with asyncio.timeout(timeout):
            while not (match := re.search(pattern, self.output, re.MULTILINE)):
                if self._reading.done():
                    raise AssertionError(f"it exited without printing {pattern!r}:\n{self.output}")
                await asyncio.sleep(0.05)
        return match

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def kill(self) -> None:
        """kill -9: no shutdown, no goodbyes."""
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
