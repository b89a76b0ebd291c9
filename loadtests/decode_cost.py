"""What decoding costs, measured (docs/security.md "Decode cost", docs/reliability.md "Decode budgets").

    python -m loadtests.decode_cost                  # against make serve: scan bombs, a valid image beside them,
                                                     #   a burst of eight 16-bit 7000x7000 PNGs (RSS), restarts
    python -m loadtests.decode_cost --overhead       # in-process: the guard's cost per image on the normal path
    python -m loadtests.decode_cost --peaks          # in-process: peak memory per format at 7000x7000 vs estimate

``--random-weights tiny_vgg`` (or ``--checkpoint``) measures a throwaway server instead. The summary goes to
``loadtests/results/decode_cost/<mode>.json``, its table to ``results/decode-<mode>/figures.json`` (shown in
docs/reliability.md by ``make docs-tables``), and is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import requests
import torch
from PIL import Image

from handlers.decode_pool import DecodeBudget, DecodePool, decode_bytes
from handlers.decoding import Limits, open_image
from handlers.preprocessing import PreprocessConfig, decode_crop, preprocess_bytes
from loadtests.decode_cost_figures import figures_of
from loadtests.harness import add_target_args, target
from loadtests.machine import machine

FIGURES = Path(__file__).resolve().parent.parent / "results"

OUT = Path(__file__).resolve().parent / "results" / "decode_cost"
#: The served model's preprocessing (112 px crops of a 128 px resize).
SERVED = PreprocessConfig(resize=128, crop=112)


def jpeg_scan_bomb(size: tuple[int, int] = (7000, 7000), total_bytes: int = 500_000) -> bytes:
    """A progressive JPEG whose last scan is repeated until the file is about ``total_bytes`` long: thousands of
    scans of a few dozen bytes, each a pass over the whole image (7000x7000: seconds per thousand scans)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    last = data[data.rindex(b"\xff\xda") : -2]
    return data[:-2] + last * max(1, (total_bytes - len(data)) // len(last)) + b"\xff\xd9"


def png16_gradient(side: int = 7000) -> bytes:
    """A 16-bit greyscale PNG of ``side`` x ``side`` (a diagonal ramp: ``side`` 7000 is about 0.5 MB)."""
    ramp = (np.add.outer(np.arange(side, dtype=np.uint32), np.arange(side, dtype=np.uint32)) * 3) % 65536
    buf = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def photo(size: tuple[int, int], fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A photo-like test image (smooth gradients plus noise)."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = np.add.outer(np.linspace(0, 160, h), np.linspace(0, 90, w))[..., None] + np.array([0, 40, 80])
    arr = np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def post(url: str, data: bytes, content_type: str = "image/jpeg") -> dict:
    start = time.perf_counter()
    r = requests.post(url, data=data, headers={"Content-Type": content_type}, timeout=120)
    took = time.perf_counter() - start
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    return {"status": r.status_code, "type": body.get("type"), "seconds": round(took, 3)}


def workers(t) -> list[tuple[int, str]]:
    return [(int(w["pid"]), w.get("startTime", "")) for w in t.model_status().get("workers", [])]


def tree_rss(pids) -> int:
    """RSS of these processes and all their children (a worker and its decode children), in bytes."""
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            total += sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            pass
    return total


def workers_rss(t) -> int:
    """RSS of the model's workers and their decode children, in bytes."""
    return tree_rss(pid for pid, _ in workers(t))


@contextlib.contextmanager
def rss_peak(rss: Callable[[], int]) -> Iterator[dict]:
    """``{"baseline": rss() before, "peak": the highest rss() sampled every 50 ms while the block runs}``."""
    seen, done = {"baseline": rss(), "peak": 0}, threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen["peak"] = max(seen["peak"], rss())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def against_server(t) -> dict:
    before = workers(t)
    url = t.predict_url
    valid = photo((640, 480), seed=5)
    post(url, valid)
    bombs = {size: jpeg_scan_bomb((7000, 7000), size) for size in (500_000, 2_000_000)}
    result: dict = {"bombs": {f"{len(b)} bytes": post(url, b) for b in bombs.values()}}
    result["valid_alone_s"] = statistics.median(post(url, valid)["seconds"] for _ in range(5))
    beside = []
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=5) as pool:
            flood = [pool.submit(post, url, list(bombs.values())[i % 2]) for i in range(4)]
            time.sleep(0.2)
            answer = post(url, valid)
            statuses = [f.result()["status"] for f in flood]
        beside.append(answer["seconds"])
        result.setdefault("bombs_beside", []).append(statuses)
    result["valid_beside_four_bombs_s"] = statistics.median(beside)
    result["burst"] = burst(t, png16_gradient(7000), 8)
    after = workers(t)
    result["worker_restarts"] = len(set(before) - set(after))
    return result


def burst(t, image: bytes, count: int) -> dict:
    """``count`` copies of ``image`` at once: the workers' RSS growth (workers + decode children) over the burst."""
    with ThreadPoolExecutor(max_workers=4) as pool:  # every worker has forked its decode children before the baseline
        list(pool.map(lambda i: post(t.predict_url, photo((320, 240), seed=i)), range(8)))
    start = time.perf_counter()
    with rss_peak(lambda: workers_rss(t)) as rss, ThreadPoolExecutor(max_workers=count) as pool:
        answers = list(pool.map(lambda _: post(t.predict_url, image, "image/png"), range(count)))
    baseline, peak = rss["baseline"], rss["peak"]
    return {
        "images": count,
        "image_bytes": len(image),
        "statuses": sorted({a["status"] for a in answers}),
        "seconds": round(time.perf_counter() - start, 2),
        "baseline_rss_mib": round(baseline / 2**20),
        "peak_rss_mib": round(peak / 2**20),
        "growth_mib": round((peak - baseline) / 2**20),
    }


def overhead(repeats: int = 40) -> dict:
    """Per image: in-process decode vs the same decode through the guard's child process (median ms, interleaved),
    with one torch thread, as each of the two workers on a 2-core machine runs (more threads spin after each tensor
    operation and take the core the child would decode on)."""
    torch.set_num_threads(1)
    images = {
        "JPEG 1024x768": photo((1024, 768)),
        "JPEG 4000x3000": photo((4000, 3000)),
        "PNG 800x600": photo((800, 600), "PNG"),
    }
    images = {f"{name} ({len(data) / 1e6:.2f} MB)": data for name, data in images.items()}
    pool = DecodePool(functools.partial(decode_crop, cfg=SERVED, limits=Limits()), 1, DecodeBudget())
    rows = {}
    for name, data in images.items():
        pool(data, open_image(data))  # fork the child, warm both paths
        times = {"in_process": [], "guarded": []}
        for _ in range(repeats):
            for kind in times:
                start = time.perf_counter()
                preprocess_bytes(data, SERVED, guard=pool if kind == "guarded" else None)
                times[kind].append(time.perf_counter() - start)
        means = {k: statistics.median(v) * 1000 for k, v in times.items()}
        rows[name] = {**{f"{k}_ms": round(v, 2) for k, v in means.items()},
                      "added_ms": round(means["guarded"] - means["in_process"], 2)}  # fmt: skip
    # The round trip alone: a child that decodes nothing, sent the first image and answering a 112x112 crop.
    echo = DecodePool(lambda data: np.zeros((SERVED.crop, SERVED.crop, 3), np.uint8), 1, DecodeBudget())
    data = next(iter(images.values()))
    echo(data, open_image(data))
    trips = []
    for _ in range(repeats):
        start = time.perf_counter()
        echo(data, open_image(data))
        trips.append(time.perf_counter() - start)
    rows["round_trip_ms"] = round(statistics.median(trips) * 1000, 2)
    return rows


#: One decode in a fresh interpreter, its peak RSS growth in KiB. VmHWM is the process's own high-water mark;
#: ru_maxrss is not: it starts at the RSS of the process that forked it (Linux carries it across exec).
PEAK_CODE = """
import re, sys
from handlers.decoding import Limits
from handlers.preprocessing import PreprocessConfig, decode_crop
def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
cfg = PreprocessConfig(resize=128, crop=112)
data = sys.stdin.buffer.read()
before = hwm()
decode_crop(data, cfg, Limits())
print(hwm() - before)
"""


def peaks(side: int = 7000) -> dict:
    """Peak memory of one decode in a fresh process per image, beside :func:`decode_bytes`'s estimate."""
    grey = np.add.outer(np.arange(side), np.arange(side)).astype(np.uint32) * 3 % 65536
    rgb = np.repeat((grey >> 8).astype(np.uint8)[..., None], 3, axis=2)
    images = {
        "16-bit grey PNG": (Image.fromarray(grey.astype(np.uint16)), "PNG", {}),
        "RGB PNG": (Image.fromarray(rgb), "PNG", {}),
        "RGBA PNG": (Image.fromarray(rgb).convert("RGBA"), "PNG", {}),
        "RGB WebP": (Image.fromarray(rgb), "WEBP", {}),
        "baseline JPEG": (Image.fromarray(rgb), "JPEG", {"quality": 90}),
        "progressive JPEG": (Image.fromarray(rgb), "JPEG", {"quality": 90, "progressive": True}),
    }
    rows = {}
    for name, (img, fmt, params) in images.items():
        buf = io.BytesIO()
        img.save(buf, fmt, **params)
        data = buf.getvalue()
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PEAK_CODE], input=data, capture_output=True, check=True)
        rows[f"{name} {side}x{side}"] = {
            "file_mb": round(len(data) / 1e6, 2),
            "seconds": round(time.perf_counter() - start, 2),
            "peak_mib": round(int(out.stdout) / 1024),
            "estimate_mib": round(decode_bytes(open_image(data), len(data), SERVED.resize) / 2**20),
        }
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--overhead", action="store_true", help="measure the guard's normal-path cost (default: off)")
    p.add_argument("--peaks", action="store_true", help="measure peak memory per format (default: off)")
    add_target_args(p)
    return p


def main(args: argparse.Namespace) -> dict:
    if args.overhead:
        mode, summary = "overhead", overhead()
    elif args.peaks:
        mode, summary = "peaks", peaks()
    else:
        with target(args) as t:
            mode, summary = "server", {"target": t.description, **against_server(t)}
    command = "python -m loadtests.decode_cost " + " ".join(sys.argv[1:])
    summary = {"command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": machine(), **summary}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{mode}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    figures = FIGURES / f"decode-{mode}" / "figures.json"
    figures.parent.mkdir(parents=True, exist_ok=True)
    figures.write_text(json.dumps(figures_of(mode, summary), indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
