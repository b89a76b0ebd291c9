"""The naive baseline for `make bench`: a plain web app wrapping the model, no batching.

    python -m loadtests.naive_server --checkpoint CKPT --port 8090

One POST = one decode + one forward pass of batch 1, through the same ``ArtClassifier`` as the
TorchServe handler, so in the same precision and layout (``--precision``); answers say
``model_version: naive``. Threaded like a Flask development server
(``threaded=True``): concurrent requests run their forward passes at the same time and share the CPU.
Raw image bodies only.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from handlers import MODEL_NAME
from handlers.classifier import ArtClassifier
from handlers.errors import InputError

MAX_BODY = 28 * 1024 * 1024


def make_handler(checkpoint: str, name: str, precision: str | None = None) -> type[BaseHTTPRequestHandler]:
    classifier = ArtClassifier.load(checkpoint, name=name, version="naive", precision=precision)

    class Predict(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._reply(200, {"status": "Healthy"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413, {"error": f"body over {MAX_BODY} bytes", "code": 413})
                return
            try:
                image = classifier.decode(self.rfile.read(length))
            except InputError as e:
                self._reply(e.status, e.to_body())
                return
            self._reply(200, classifier.encode(classifier.predict(image[None])[0]))

        def log_message(self, *args) -> None:  # quiet: the benchmark measures, it does not log
            pass

    return Predict


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="artserve checkpoint (required)")
    p.add_argument("--port", type=int, default=8090, help="listen on 127.0.0.1:PORT (default: %(default)s)")
    p.add_argument("--name", default=MODEL_NAME, help="model name in responses (default: %(default)s)")
    p.add_argument(
        "--precision",
        default=None,
        choices=("auto", "fp32", "bf16", "fp16"),
        help="compute precision, as the handler's (default: ARTSERVE_PRECISION, else auto)",
    )
    return p


def main(args: argparse.Namespace) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.checkpoint, args.name, args.precision))
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
