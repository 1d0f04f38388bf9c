#!/usr/bin/env python3
"""fake_jira.py - a stand-in Jira Cloud REST v3 server for tests (stdlib only).

Usage: fake_jira.py PORT_FILE LOG_FILE
Listens on 127.0.0.1 on a free port, writes the port to PORT_FILE and one
JSON line per request to LOG_FILE: {method, path, headers, body}.
The issue key picks the behaviour:
  PROJ-*   normal issue       AUTH-1  401       FORBID-1  403
  NOPE-1   404                RATE-1  429 (Retry-After: 1) once, then normal
  DOWN-1   503 always         NOTR-1  has no transition to Done/Blocked
"""
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT_FILE, LOG_FILE = sys.argv[1], sys.argv[2]
lock = threading.Lock()
seen = {}

ISSUE = {
    "key": None,
    "fields": {
        "summary": "Make the widget blue",
        "description": {"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "The widget is red."}]}]},
        "issuetype": {"name": "Bug"},
        "status": {"name": "To Do"},
        "priority": {"name": "High"},
        "labels": ["x"],
        "project": {"key": "PROJ"},
    },
}
TRANSITIONS = {"transitions": [
    {"id": "21", "name": "Start", "to": {"name": "In Progress"}},
    {"id": "31", "name": "Finish", "to": {"name": "Done"}},
    {"id": "41", "name": "Block", "to": {"name": "Blocked"}},
]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj=None, headers=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        rec = {"method": self.command, "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        with lock:
            with open(LOG_FILE, "a") as f:
                f.write(json.dumps(rec) + "\n")
        m = re.match(r"^/rest/api/3/issue/([A-Z][A-Z0-9_]*-\d+)(/[a-z]+)?(\?.*)?$", self.path)
        if not m:
            return self.reply(404, {"errorMessages": ["no route"]})
        key, sub = m.group(1), m.group(2) or ""
        if key == "AUTH-1":
            return self.reply(401, {"errorMessages": ["unauthorized"]})
        if key == "FORBID-1":
            return self.reply(403, {"errorMessages": ["forbidden"]})
        if key == "NOPE-1":
            return self.reply(404, {"errorMessages": ["Issue does not exist"]})
        if key == "DOWN-1":
            return self.reply(503, {"errorMessages": ["down"]})
        if key == "RATE-1":
            with lock:
                seen[key] = seen.get(key, 0) + 1
                first = seen[key] == 1
            if first:
                return self.reply(429, {"errorMessages": ["slow down"]}, {"Retry-After": "1"})
        if self.command == "GET" and sub == "":
            issue = dict(ISSUE, key=key)
            return self.reply(200, issue)
        if self.command == "POST" and sub == "/comment":
            return self.reply(201, {"id": "10001"})
        if self.command == "PUT" and sub == "":
            return self.reply(204)
        if self.command == "GET" and sub == "/transitions":
            if key == "NOTR-1":
                return self.reply(200, {"transitions": TRANSITIONS["transitions"][:1]})
            return self.reply(200, TRANSITIONS)
        if self.command == "POST" and sub == "/transitions":
            return self.reply(204)
        return self.reply(405, {"errorMessages": ["method not allowed"]})

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
