#!/usr/bin/env python3
"""metrics.py - GET /metrics parsed with prometheus_client's text parser.

  metrics.py URL [USER PASSWORD]

Prints one JSON object: {"families": [names], "v": {"name{labels}": value}}
with every sample, so a test can compare scrapes. Fails (exit 1) when the
text does not parse.
"""
import base64
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

url = sys.argv[1]
req = urllib.request.Request(url)
if len(sys.argv) > 3:
    cred = base64.b64encode(("%s:%s" % (sys.argv[2], sys.argv[3])).encode()).decode()
    req.add_header("Authorization", "Basic " + cred)
with urllib.request.urlopen(req, timeout=60) as r:
    ctype = r.headers.get("Content-Type", "")
    text = r.read().decode()
if not ctype.startswith("text/plain"):
    sys.exit("unexpected Content-Type " + ctype)
out = {"families": [], "types": {}, "v": {}}
for fam in text_string_to_metric_families(text):
    out["families"].append(fam.name)
    out["types"][fam.name] = fam.type
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        out["v"]["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(out, sort_keys=True))
