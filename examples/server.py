"""A small HTTP diagnosis service over a directory of models (standard library only).

    python examples/server.py MODELS_DIR [--port 8000]

    curl --data-binary @image.png http://127.0.0.1:8000/models/gis_a     # or a .npy body
    curl http://127.0.0.1:8000/models                                     # the model names

POST /models/<name> with a .png or .npy body (one image) answers with the JSON object `pdinfer run
--json` prints, its "input" being the model's name: {"input": name, "class": best class,
"probability": its value, "probabilities": {class: value}} (keys by the model's output_kind). Models come
from a pdinfer.ModelStore, so a model file replaced (write, then rename) is served from the next
request on. At start every model is loaded and run once (warm-up: kernels compiled or read from the
cache); a file that does not load is named on stderr and the others are served. It binds to 127.0.0.1 only; put a real front end before it for anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

import pdinfer
from pdinfer.cli import record  # the JSON line of `pdinfer run --json`

MAX_BODY = 16 << 20  # bytes


def diagnose(store: pdinfer.ModelStore, name: str, body: bytes) -> dict:
    """The answer to one request: the image in `body` (.npy or .png bytes) run by model `name`."""
    model = store.get(name)
    suffix = ".npy" if body[:6] == b"\x93NUMPY" else ".png"
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:  # read as pdinfer.run reads a file
        f.write(body)
        f.flush()
        values = pdinfer.run(model, f.name)
    if values.ndim != 1:
        raise pdinfer.InputError("send one image per request")
    return record(model, name, values)


def make_server(directory: str | Path, port: int = 0) -> ThreadingHTTPServer:
    """The service on 127.0.0.1:port (0: any free port), every model warmed up; not yet serving.
    A model file that does not load is reported on stderr and answered 422 until it is replaced."""
    store = pdinfer.ModelStore(directory)
    for name in store.names():  # warm-up: load and run each model (its kernels compile or load in the background)
        try:
            model = store.get(name)
        except pdinfer.PdinferError as e:
            print(f"not serving {name!r}: {e}", file=sys.stderr)
            continue
        model(np.zeros(model.input_shape, np.float32))

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/models":
                self.answer(200, {"models": store.names()})
            else:
                self.answer(404, {"error": "GET /models, or POST an image to /models/<name>"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not self.path.startswith("/models/") or not 0 < length <= MAX_BODY:
                self.answer(400, {"error": f"POST one .png or .npy image (at most {MAX_BODY} bytes) "
                                           "to /models/<name>"})
                return
            body = self.rfile.read(length)
            try:
                self.answer(200, diagnose(store, self.path[len("/models/"):], body))
            except pdinfer.ModelNotFoundError as e:
                self.answer(404, {"error": str(e)})
            except pdinfer.PdinferError as e:  # a bad image, or a model file that does not load
                self.answer(422, {"error": str(e)})

        def log_message(self, *args) -> None:  # quiet; a real service would log somewhere
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.store = store
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", help="directory of .pdw files")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = make_server(args.models, args.port)
    print(f"serving {len(server.store.names())} models on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
