"""Test HTTP server for tests/unit/test_activity.c: echoes each request as
JSON. Listens on 127.0.0.1 on a free port and prints the port on stdout;
exits when its stdin closes, so it never outlives the test that started it."""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def handle_any(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/final")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(5)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        out = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }).encode()
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Test", "yes")
        self.send_header("X-Multi", "a")
        self.send_header("X-Multi", "b")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        try:
            self.wfile.write(out)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


def exit_on_stdin_eof():
    sys.stdin.buffer.read()
    os._exit(0)


threading.Thread(target=exit_on_stdin_eof, daemon=True).start()
server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
server.daemon_threads = True
os.write(1, b"%d\n" % server.server_address[1])  # one write: the test reads one line
server.serve_forever()
