"""Serve the upload page (``index.html`` beside this file) from its own local origin: ``make demo``.

    python -m deploy.demo.page [--port 8090] [--bind 127.0.0.1] [--api http://127.0.0.1:8080]

The page calls the inference API from another origin, so the browser lets it read the answers only if TorchServe
names this page's origin in ``cors_allowed_origin`` (deploy/config/config.properties; the default is this
server's default, ``http://127.0.0.1:8090``). Nothing here needs the model server: the page says so when it
cannot reach it. Only the page itself is served; every other path is a 404.
"""

from __future__ import annotations

import argparse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from deploy.server import CONFIG, read_properties

PAGE = Path(__file__).resolve().parent / "index.html"
DEFAULT_PORT = 8090
DEFAULT_API = "http://127.0.0.1:8080"


class PageHandler(BaseHTTPRequestHandler):
    """``GET /`` (or ``/index.html``, any query string) -> the page; anything else -> 404."""

    server_version = "artserve-demo"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] not in ("/", "/index.html"):
            self.send_error(HTTPStatus.NOT_FOUND, "only the upload page is served here: /")
            return
        body = PAGE.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        pass  # a page request per visit is not worth a line


def origin(bind: str, port: int) -> str:
    return f"http://{bind}:{port}"


def page_url(bind: str, port: int, api: str) -> str:
    url = f"{origin(bind, port)}/"
    return url if api == DEFAULT_API else f"{url}?api={quote(api, safe=':/')}"


def cors_warning(page_origin: str) -> str | None:
    """A line for the person starting the page when the checked-in CORS setting does not allow its origin."""
    allowed = read_properties(CONFIG).get("cors_allowed_origin")
    if allowed in ("*", page_origin):
        return None
    return (
        f"note: TorchServe allows the origin {allowed!r} (cors_allowed_origin in {CONFIG}), not {page_origin}:\n"
        f"browsers will refuse this page's requests until that line names {page_origin} (then restart make serve)."
    )


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="the page's port (default: %(default)s)")
    p.add_argument("--bind", default="127.0.0.1", help="the page's address (default: %(default)s)")
    p.add_argument("--api", default=DEFAULT_API, help="the TorchServe inference API it calls (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> None:
    try:
        server = ThreadingHTTPServer((args.bind, args.port), PageHandler)
    except OSError as e:
        raise SystemExit(
            f"cannot serve the page on {args.bind}:{args.port}: {e.strerror} (pick another --port)"
        ) from None
    print(f"Upload page: {page_url(args.bind, args.port, args.api)}", flush=True)
    print(f"It calls {args.api} (start it with `make serve`); Ctrl-C stops the page.", flush=True)
    warning = cors_warning(origin(args.bind, args.port))
    if warning:
        print(warning, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
