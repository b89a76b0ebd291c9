"""A decode's last line of defence: a time budget per image and a memory budget per worker.

The structural checks (``formats.check_structure``) refuse every decode cost we know of before decoding starts. What
they miss must still not hold a worker for a minute (TorchServe then kills it, and every request of its batch) or take
gigabytes. A decode inside Pillow cannot be interrupted from another thread (it runs in C, the GIL released), so each
CPU decode runs in a child process: a decode that overruns ``timeout_s`` is killed with its process, that image alone
gets 422 ``too_costly``, and a fresh child is forked for the next one. Children are forked from the worker on first
use (one per decode thread, like a DataLoader's workers) and keep serving; each runs only Pillow and numpy, dies with
its worker (``PR_SET_PDEATHSIG``) and hands back the small cropped ``uint8`` array, never the decoded image.

The memory budget bounds what the decodes in flight in one worker hold at once, as estimated from their headers
(:func:`decode_bytes`): a decode starts only when its estimate fits in what is left of ``memory_mb``, so many small
images decode side by side, large ones one after another, and one worker's decodes never hold more than ``memory_mb``
(``docs/reliability.md`` derives the pods' memory limits from it). An image whose estimate alone exceeds it is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import queue
import signal
import socket
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
from PIL import Image

from handlers.errors import InputError, PayloadTooLarge, TooCostly

#: Pillow's storage per pixel; 4 bytes for every mode not listed (RGB is stored as RGBX).
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
#: Bytes per pixel of the conversion to RGB (``decoding.to_rgb``): alpha composited on white holds RGBA, its white
#: background and the RGB result; 16-bit and float hold the 8-bit band output and RGB; other modes the RGB result.
#: The decoders' own buffers and the crop, whatever the size (measured peaks exceed the per-pixel sum by 2-5 MiB).
_BUFFERS = 8 * 2**20
_CONVERT = {"RGB": 0, "RGBA": 12, "LA": 12, "PA": 12, "I;16": 5, "I;16L": 5, "I;16B": 5, "I;16N": 5, "I": 5, "F": 5}


@dataclass(frozen=True)
class DecodeBudget:
    """``timeout_s``: the most one image's decode may take (0 = decode in the worker's own threads, with no deadline
    and no child processes). ``memory_mb``: what one worker's decodes may hold at once."""

    timeout_s: float = 10.0
    memory_mb: int = 1024

    @classmethod
    def from_config(cls, config: Mapping | None = None, env: Mapping[str, str] = os.environ) -> DecodeBudget:
        """``decode_timeout_s`` / ``decode_memory_mb`` from the ``handler:`` section, overridden by
        ``ARTSERVE_DECODE_TIMEOUT_S`` / ``ARTSERVE_DECODE_MEMORY_MB``; unset means the defaults above."""
        values: dict = {}
        for key, kind in (("decode_timeout_s", float), ("decode_memory_mb", int)):
            raw = env.get(f"ARTSERVE_{key.upper()}") or (config or {}).get(key)
            if raw is None or raw == "":
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{key}={raw!r} is not a number") from None
            if value < 0 or (key == "decode_memory_mb" and value == 0) or not math.isfinite(value):
                raise ValueError(f"{key}={raw!r} must be positive" + (" (or 0: off)" if kind is float else ""))
            values[key.removeprefix("decode_")] = value
        return cls(**values)


def decode_bytes(img: Image.Image, data_len: int, draft_size: int | None) -> int:
    """Upper estimate of what decoding the checked header ``img`` holds at its peak: the encoded bytes, the decoded
    image (reduced by the JPEG draft), a copy when EXIF orientation turns it, the conversion to RGB, libwebp's own
    RGBA canvas, and a progressive JPEG's full-size coefficients (2 bytes per sample, as if not subsampled). Measured
    peaks at 7000x7000 (``python -m loadtests.decode_cost --peaks``) match it for PNG and WebP and are below it for
    JPEG."""
    width, height = img.size
    scale = 1
    if draft_size and img.format in ("JPEG", "MPO"):
        while scale < 8 and min(width, height) // (scale * 2) >= draft_size:
            scale *= 2
    pixels = math.ceil(width / scale) * math.ceil(height / scale)
    mode = "PA" if img.mode == "P" and "transparency" in img.info else img.mode
    per_pixel = 2 * _STORED.get(mode, 4) + _CONVERT.get(mode, 4) + (8 if img.format == "WEBP" else 0)
    coefficients = 2 * len(img.getbands()) * width * height if img.info.get("progressive") else 0
    return _BUFFERS + data_len + pixels * per_pixel + coefficients


class MemoryBudget:
    """A counting semaphore of bytes: :meth:`hold` waits until its amount fits in what is left."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, amount: int):
        with self._cond:
            self._cond.wait_for(lambda: self.used + amount <= self.total)
            self.used += amount
        try:
            yield
        finally:
            with self._cond:
                self.used -= amount
                self._cond.notify_all()


class DecodePool:
    """Runs ``work(data) -> np.ndarray`` in child processes, one call at a time per child, ``processes`` children at
    most; :meth:`run` applies the time and memory budgets."""

    def __init__(
        self, work: Callable[[bytes], np.ndarray], processes: int, budget: DecodeBudget, draft_size: int | None = None
    ) -> None:
        """``draft_size``: the JPEG draft size ``work`` decodes at (for :func:`decode_bytes`)."""
        self.work, self.budget, self.draft_size = work, budget, draft_size
        self.memory = MemoryBudget(budget.memory_mb * 2**20)
        self._idle: queue.SimpleQueue[_Child | None] = queue.SimpleQueue()
        self._children: set[_Child] = set()
        for _ in range(max(1, processes)):
            self._idle.put(None)  # forked on first use
        weakref.finalize(self, _stop_all, self._children)

    def __call__(self, data: bytes, img: Image.Image) -> np.ndarray:
        """``work(data)`` for the checked header ``img`` of ``data``: a ``preprocessing.Guard``."""
        return self.run(data, decode_bytes(img, len(data), self.draft_size))

    def run(self, data: bytes, cost: int) -> np.ndarray:
        """``work(data)`` in a child, once ``cost`` bytes fit in the memory budget; its ``InputError`` is raised
        as it is, an overrun of ``timeout_s`` as ``TooCostly``, any other failure as ``RuntimeError``."""
        if cost > self.memory.total:
            raise PayloadTooLarge(
                f"decoding this image would hold about {cost / 2**20:.0f} MiB; the limit is {self.budget.memory_mb} "
                "MiB (decode_memory_mb); send a smaller or 8-bit RGB image"
            )
        with self.memory.hold(cost):
            child = self._idle.get()
            try:
                if child is None:
                    child = _Child.fork(self.work)
                    self._children.add(child)
                ok, value = child.call(data, self.budget.timeout_s)
            except BaseException:
                if child is not None:
                    self._children.discard(child)
                    child.stop()
                child = None
                raise
            finally:
                self._idle.put(child)
        if ok:
            return value
        raise value if isinstance(value, InputError) else RuntimeError(f"decoding failed in the child: {value}")


class _Child:
    def __init__(self, pid: int, conn: Connection) -> None:
        self.pid, self.conn = pid, conn

    @classmethod
    def fork(cls, work: Callable[[bytes], np.ndarray]) -> _Child:
        parent, child = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                parent.close()
                _serve(Connection(child.detach()), work)
            finally:
                os._exit(0)
        child.close()
        return cls(pid, Connection(parent.detach()))

    def call(self, data: bytes, timeout_s: float) -> tuple[bool, object]:
        self.conn.send_bytes(data)
        if not self.conn.poll(timeout_s):
            raise TooCostly(
                f"decoding this image took over {timeout_s:g} s, the limit per image (decode_timeout_s); "
                "re-save it as a baseline JPEG or an 8-bit PNG"
            )
        try:
            return self.conn.recv()
        except EOFError:
            raise RuntimeError("the decoding child process died (a decoder crash on this image)") from None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)
        self.conn.close()


def _stop_all(children: set[_Child]) -> None:
    for child in list(children):
        child.stop()


def _serve(conn: Connection, work: Callable[[bytes], np.ndarray]) -> None:
    """The child's loop: decode what arrives, answer ``(True, array)`` or ``(False, error)``; exit when the worker
    closes its end. Holds no descriptor but its own (the worker's sockets and the other children's stay theirs)."""
    keep = conn.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD 1 MiB: a large image's memory goes back when it is freed
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            answer = (True, work(data))
        except InputError as e:
            answer = (False, e)
        except BaseException as e:  # noqa: BLE001 - reported to the worker, which answers 500 for this image
            answer = (False, f"{type(e).__name__}: {e}")
        conn.send(answer)
