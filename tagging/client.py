"""A concurrent client for the prediction endpoint: collection tagging, evaluation against a URL, the benchmark.

Sends each image file as a raw body with its image Content-Type, with bounded concurrency, retrying
only transient failures (503/502/504/429, connection errors) with exponential backoff and jitter.
Every file yields exactly one :class:`Result`: nothing is dropped silently.
"""

from __future__ import annotations

import mimetypes
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import requests

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class Result:
    path: str
    status: int | None  # HTTP status, None when no response arrived
    body: dict | None  # the JSON body (a prediction, or the server's error)
    error: str | None  # why it failed, None on success
    seconds: float
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


def content_type(path: str | Path) -> str:
    guessed, _ = mimetypes.guess_type(str(path))
    return guessed if guessed and guessed.startswith("image/") else "application/octet-stream"


def is_prediction(body: object) -> bool:
    """artserve's answer: a JSON object with a ``label``."""
    return isinstance(body, dict) and "label" in body


class Client:
    """Thread-safe: one ``requests.Session`` per thread. A 200 counts as an answer when ``accept(body)`` holds
    (artserve's prediction by default; the GPU benchmark also drives TorchServe's stock handler)."""

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        accept: Callable[[object], bool] = is_prediction,
    ) -> None:
        self.url, self.timeout, self.retries, self.backoff, self.accept = url, timeout, retries, backoff, accept
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def classify(self, path: str | Path) -> Result:
        start = time.monotonic()
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            return Result(str(path), None, None, f"cannot read file: {e}", 0.0, 0)
        headers = {"Content-Type": content_type(path)}
        error, status, body = None, None, None
        for attempt in range(1, self.retries + 2):
            try:
                r = self._session().post(self.url, data=data, headers=headers, timeout=self.timeout)
                status = r.status_code
                try:
                    body = r.json()
                except ValueError:
                    body = None
                if status == 200 and self.accept(body):
                    return Result(str(path), status, body, None, time.monotonic() - start, attempt)
                error = (body or {}).get("error") if isinstance(body, dict) else None
                error = error or f"HTTP {status}: {r.text[:200]}"
                if status not in RETRY_STATUSES:
                    break
            except (requests.ConnectionError, requests.Timeout) as e:
                status, body, error = None, None, f"{type(e).__name__}: {e}"
            if attempt <= self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
        return Result(str(path), status, body, error, time.monotonic() - start, attempt)

    def classify_many(self, paths: Iterable[str | Path], concurrency: int = 8) -> Iterator[Result]:
        """Yield one Result per path as they complete, keeping at most ``concurrency`` in flight."""
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            pending = set()
            for path in paths:
                pending.add(pool.submit(self.classify, path))
                if len(pending) >= concurrency * 2:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
