"""A static file server on 127.0.0.1 that honours HTTP Range requests, for the remote tests.

Python's ``http.server`` answers every request with the whole file (200); GDAL's ``/vsicurl/``
reads COGs by byte ranges and needs ``206 Partial Content``. This one answers single ranges,
HEAD, and keep-alive (HTTP/1.1). With ``--drop SUBSTRING`` it closes the connection without an
answer for every request whose path contains it (a server that drops connections); every
request is appended to ``--log FILE`` as ``METHOD PATH RANGE``.

Run it as its own process (:func:`start`): a server thread inside the test process can stall on
the GIL while GDAL waits on it.

    python range_server.py ROOT [--drop TEXT] [--log FILE]    # prints its base URL, serves
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import re
import socketserver
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    drop: str | None = None
    log_path: str | None = None

    def log_message(self, *args: object) -> None:  # quiet: the log file says what happened
        pass

    def _logged_or_dropped(self) -> bool:
        if self.log_path:
            with open(self.log_path, "a") as fh:
                fh.write(f"{self.command} {self.path} {self.headers.get('Range')}\n")
        if self.drop and self.drop in self.path:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return True
        return False

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._logged_or_dropped():
            self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        if not self._logged_or_dropped():
            self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = self.translate_path(self.path.split("?")[0])
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        match = RANGE.match(self.headers.get("Range", "").strip())
        if match:
            first, last = match.groups()
            if first == "":  # the last N bytes
                start = max(0, size - int(last))
            else:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            try:
                self.wfile.write(fh.read(end - start + 1))
            except (BrokenPipeError, ConnectionResetError):  # GDAL closes early at times
                self.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def start(root: Path, drop: str | None = None, log: Path | None = None) -> Iterator[str]:
    """Serve ``root`` from a child process; yields the base URL, stops the child at the end."""
    cmd = [sys.executable, __file__, str(root)]
    cmd += ["--drop", drop] if drop else []
    cmd += ["--log", str(log)] if log else []
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().strip() if child.stdout else ""
        assert line.startswith("http://127.0.0.1:"), f"server did not start: {line!r}"
        yield line
    finally:
        child.terminate()
        child.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--drop")
    parser.add_argument("--log")
    args = parser.parse_args()
    handler = type("H", (Handler,), {"drop": args.drop, "log_path": args.log})
    server = Server(("127.0.0.1", 0), partial(handler, directory=args.root))
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
