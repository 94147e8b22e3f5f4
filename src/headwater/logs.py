"""How Headwater writes its log: lines to stderr, "<time> <level> <logger> <message>".

The proxy writes a line for every request it forwards (`headwater.proxy`), thousands a second, so
the line's fixed costs are kept small:

- the time is formatted once a second (the milliseconds are added to the cached text), not with
  a `strftime` for every line;
- lines below WARNING are written to stderr's buffer and flushed at most FLUSH_SECONDS later by a
  small thread, not with a system call each; a WARNING or worse is flushed at once, and so is
  everything at exit (`logging.shutdown`). A process killed with SIGKILL loses at most the last
  FLUSH_SECONDS of INFO lines.

Nothing here decides what is logged; operators who configure logging themselves (a JSON
formatter, say) can replace the handler as with any `logging` setup.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FLUSH_SECONDS = 0.2


class Formatter(logging.Formatter):
    """logging.Formatter's default time format ("2026-12-01 16:23:00,123"), formatted once a second."""

    _second: int | None = None
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._text, record.msecs)


class BufferedStreamHandler(logging.StreamHandler):
    """A StreamHandler that flushes warnings at once and other lines within FLUSH_SECONDS."""

    def __init__(self, stream=None, flush_seconds: float = FLUSH_SECONDS):
        super().__init__(stream)
        self._flusher = threading.Thread(target=self._flush_every, args=(flush_seconds,), daemon=True,
                                         name="headwater-log-flush")
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _flush_every(self, seconds: float) -> None:
        while True:
            time.sleep(seconds)
            self.flush()  # takes the handler's lock; a flush of nothing writes nothing


def configure(level: int = logging.INFO, flush_seconds: float = FLUSH_SECONDS) -> None:
    """The root logger writes to stderr through a BufferedStreamHandler (what `headwater` runs)."""
    # Our format shows none of these, so a line need not collect them (the logging HOWTO's
    # "Optimization" section).
    logging._srcfile = None  # caller's file, line and function
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BufferedStreamHandler(buffered_stderr(), flush_seconds)
    handler.setFormatter(Formatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def buffered_stderr() -> io.TextIOWrapper:
    """A buffered text stream on stderr's file descriptor. Python's own sys.stderr writes each
    line with a system call of its own when stderr is not a terminal (it is unbuffered)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by something without a descriptor
        return sys.stderr
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw, 64 * 1024), encoding=sys.stderr.encoding or "utf-8",
                            errors="backslashreplace")
