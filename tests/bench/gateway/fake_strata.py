"""A stand-in for `strata serve` / `strata keys create` with the same command line: a tiny
proxy that routes `model` to its upstream and demands the key it hands out. It lets the strata
launcher of the gateway benchmark be tested before strata's gateway exists."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

KEY = "sk-fake-strata"


def serve(config_path: str) -> None:
    with open(config_path) as f:
        config = yaml.safe_load(f)
    routes = {m: u["url"] for u in config["upstreams"] for m in u["models"]}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(200 if self.path == "/healthz" else 404, "text/plain", b"ok")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers["Authorization"] != f"Bearer {KEY}":
                self._answer(401, "application/json", b'{"error":"bad key"}')
                return
            url = routes[json.loads(body)["model"]] + "/chat/completions"
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request) as r:
                self._answer(r.status, r.headers["Content-Type"], r.read())

        def _answer(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = config["server"]
    ThreadingHTTPServer((server["host"], server["port"]), Handler).serve_forever()


def main(args: list[str]) -> None:
    if args[:2] == ["keys", "create"] and "--json" in args:
        print(json.dumps({"key": KEY, "tenant": "bench"}))
    elif args[0] == "serve":
        serve(args[args.index("--config") + 1])
    else:
        sys.exit(f"fake strata: unexpected arguments {args}")


if __name__ == "__main__":
    main(sys.argv[1:])
