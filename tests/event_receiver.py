"""A webhook receiver on loopback, standing in for an application's URL in the README's examples.

    eval "$(.venv/bin/python tests/event_receiver.py --background data/received)"
    # sets RECEIVER_URL (POST there) and RECEIVER_PID (kill it when done)

It answers 200 to every POST and keeps each one in the directory: `1.json` (the body as it came),
`1.signature` (its X-Headwater-Signature header), then 2, 3... It checks nothing itself: the README
shows how a receiver verifies the signature.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def receiver(directory: Path) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 (a free port) keeping each POST in `directory`; not yet serving."""
    directory.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count(1)
    lock = threading.Lock()

    class Keep(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                n = next(numbers)
            (directory / f"{n}.signature").write_text(self.headers.get("x-headwater-signature", ""))
            (directory / f"{n}.json").write_bytes(body)  # last: a reader waiting for it finds both
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # quiet: the files say what came
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Receive webhook POSTs on loopback and keep each in DIRECTORY.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--background", action="store_true",
                        help="serve from a background process; print RECEIVER_URL and RECEIVER_PID")
    args = parser.parse_args(argv)
    server = receiver(args.directory)
    url = f"http://127.0.0.1:{server.server_address[1]}/events"
    if args.background:
        child = os.fork()
        if child:
            print(f"export RECEIVER_URL={url}\nexport RECEIVER_PID={child}", flush=True)
            return 0
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # `$(...)` ends with the parent
    else:
        print(f"receiving on {url}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
