"""Headwater's log (headwater/logs.py): lines on stderr, warnings at once, the rest within moments."""

import logging
import os
import select
import subprocess
import sys

from headwater.logs import FORMAT, Formatter

# A process that logs the given lines, then waits to be told to log one more and exit.
SCRIPT = """
import logging, sys
from headwater import logs
logs.configure(flush_seconds={flush})
log = logging.getLogger("headwater.test")
for level, message in {lines!r}:
    log.log(level, message)
sys.stdin.readline()
log.info("last info")
"""


def start(flush: float, lines) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT.format(flush=flush, lines=lines)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)


def read_line(process: subprocess.Popen, timeout: float = 5.0) -> str:
    """The next line of its stderr, or "" if none comes within `timeout` seconds (read byte by
    byte, so that nothing waits in a buffer of ours while select looks at the pipe)."""
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([process.stderr], [], [], timeout)
        if not ready:
            return ""
        byte = os.read(process.stderr.fileno(), 1)
        if not byte:
            break
        line += byte
    return line.decode()


def test_a_warning_is_written_at_once_with_the_lines_before_it():
    process = start(flush=3600, lines=[(logging.INFO, "first info"), (logging.WARNING, "a warning")])
    try:
        info, warning = read_line(process), read_line(process)
        running = process.poll() is None
    finally:
        process.communicate(b"\n", timeout=10)

    assert info.endswith(" INFO headwater.test first info\n"), info
    assert " WARNING headwater.test a warning" in warning
    assert running


def test_an_info_line_is_written_while_the_process_runs_and_the_last_at_exit():
    process = start(flush=0.1, lines=[(logging.INFO, "first info")])
    try:
        first = read_line(process)  # by the flusher: the process waits on its stdin meanwhile
        running = process.poll() is None
        _, rest = process.communicate(b"\n", timeout=10)
    finally:
        process.kill()

    assert first.endswith(" INFO headwater.test first info\n"), first
    assert running
    assert rest.decode().endswith(" INFO headwater.test last info\n"), rest


def test_the_time_is_formatted_as_logging_formats_it():
    record = logging.LogRecord("headwater.test", logging.INFO, "", 0, "hello", None, None)

    assert Formatter(FORMAT).format(record) == logging.Formatter(FORMAT).format(record)
