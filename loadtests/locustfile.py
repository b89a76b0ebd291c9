"""The virtual-tour client: Locust load test of artserve's prediction endpoint with SLO gates.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8080 -u 8 -t 60s \
        --shape stages --slo-p95-ms 3000 --slo-p99-ms 5000 --slo-error-ratio 0.01

(`make loadtest` wraps this and writes the report.) Each user posts real artwork images from
``--image-dir`` (default ../shared/data/art5/val), a mix of JPEG and in-memory PNG/WebP re-encodings
at two sizes, as raw bodies, multipart forms and base64 JSON. Every 200 body is validated: the label
and each top-k label belong to the label set, probabilities lie in [0, 1], are sorted, sum to at most
1 (+1e-3) and the top label matches. A small weighted share of deliberately bad requests must come
back 4xx (a success when they do). Stats are grouped by request kind.

The label set is ``--labels`` (comma-separated), else the class folder names under ``--image-dir``
(artserve's label maps are generated from those folders). Load shapes (``--shape``): ``steady``
(``-u`` users for ``-t``), ``stages`` (ramp up to ``-u`` and back down), ``spike`` (a quarter of
``-u``, then all of them for a fifth of the run, then a quarter again). When the run ends, a
``quitting`` listener compares p95/p99 latency of the image requests and the error ratio of all
requests with the SLO flags and sets the exit code; ``--slo-report`` writes the verdict as JSON.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from locust import HttpUser, LoadTestShape, events, task
from locust.stats import StatsEntry
from PIL import Image

from handlers import MODEL_NAME
from loadtests.validation import check_prediction
from training import DATA_DIR

DEFAULT_IMAGE_DIR = DATA_DIR / "val"
BAD_PREFIX = "bad:"

log = logging.getLogger("artserve.loadtest")


@events.init_command_line_parser.add_listener
def add_arguments(parser) -> None:
    group = parser.add_argument_group("artserve")
    group.add_argument(
        "--image-dir",
        default=str(DEFAULT_IMAGE_DIR),
        env_var="ARTSERVE_IMAGES",
        help="folder of images, searched recursively (default: %(default)s)",
    )
    group.add_argument(
        "--max-images",
        type=int,
        default=200,
        env_var="ARTSERVE_MAX_IMAGES",
        help="images kept in memory (default: 200)",
    )
    group.add_argument(
        "--labels",
        default="",
        env_var="ARTSERVE_LABELS",
        help="comma-separated label set (default: the class folder names under --image-dir)",
    )
    group.add_argument("--model", default=MODEL_NAME, env_var="ARTSERVE_MODEL", help=f"default: {MODEL_NAME}")
    group.add_argument(
        "--shape",
        choices=("steady", "stages", "spike"),
        default="steady",
        env_var="LOAD_SHAPE",
        help="load shape over -t with -u peak users (default: steady)",
    )
    group.add_argument(
        "--slo-p95-ms", type=float, default=3000.0, env_var="SLO_P95_MS", help="p95 latency gate (default: 3000)"
    )
    group.add_argument(
        "--slo-p99-ms", type=float, default=5000.0, env_var="SLO_P99_MS", help="p99 latency gate (default: 5000)"
    )
    group.add_argument(
        "--slo-error-ratio",
        type=float,
        default=0.01,
        env_var="SLO_ERROR_RATIO",
        help="largest allowed failed/total ratio (default: 0.01)",
    )
    group.add_argument(
        "--slo-report", default="", env_var="SLO_REPORT", help="write the SLO verdict to this JSON file (default: none)"
    )


# ---------------------------------------------------------------------------------------------------
# Test data: loaded once per process at test start.


@dataclass(frozen=True)
class Sample:
    name: str  # e.g. "png" or "webp-2x": the stats group of the request
    content_type: str
    data: bytes


def encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 85} if fmt in ("JPEG", "WEBP") else {}))
    return out.getvalue()


def load_samples(image_dir: Path, limit: int) -> list[Sample]:
    """Real images, every third re-encoded as PNG and every fifth as WebP, every fourth scaled up 2x."""
    paths = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not paths:
        raise SystemExit(f"no .jpg/.png/.webp images under {image_dir}: set --image-dir or ARTSERVE_IMAGES")
    paths = random.Random(0).sample(paths, min(limit, len(paths)))
    samples = []
    for i, path in enumerate(paths):
        data = path.read_bytes()
        fmt, scale = ("PNG" if i % 3 == 1 else "WEBP" if i % 5 == 2 else "JPEG"), (2 if i % 4 == 3 else 1)
        if fmt == "JPEG" and scale == 1 and path.suffix.lower() in (".jpg", ".jpeg"):
            samples.append(Sample("jpeg", "image/jpeg", data))
            continue
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            if scale > 1:
                img = img.resize((img.width * scale, img.height * scale), Image.Resampling.BICUBIC)
            suffix = "-2x" if scale > 1 else ""
            samples.append(Sample(fmt.lower() + suffix, f"image/{fmt.lower()}", encode(img, fmt)))
    return samples


def label_set(option: str, image_dir: Path) -> frozenset[str]:
    if option:
        return frozenset(label.strip() for label in option.split(",") if label.strip())
    classes = frozenset(p.name for p in image_dir.iterdir() if p.is_dir()) if image_dir.is_dir() else frozenset()
    if len(classes) < 2:
        raise SystemExit(f"{image_dir} has no class folders to take the label set from: pass --labels a,b,c")
    return classes


BAD_REQUESTS = (
    # (stats name, content type, body): each must be answered 4xx
    ("not an image", "image/jpeg", b"this is plain text, not a JPEG"),
    ("empty body", "image/jpeg", b""),
    ("svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'),
    ("json without image", "application/json", b'{"picture": "nothing here"}'),
)

DATA: dict = {}


@events.test_start.add_listener
def on_test_start(environment, **_kwargs) -> None:
    opts = environment.parsed_options
    image_dir = Path(opts.image_dir)
    DATA["samples"] = load_samples(image_dir, opts.max_images)
    DATA["labels"] = label_set(opts.labels, image_dir)
    jpeg = next(s.data for s in DATA["samples"] if s.content_type == "image/jpeg")
    DATA["bad"] = [*BAD_REQUESTS, ("truncated jpeg", "image/jpeg", jpeg[: len(jpeg) // 3])]
    kinds = sorted({s.name for s in DATA["samples"]})
    log.info("%d images (%s), labels %s", len(DATA["samples"]), ", ".join(kinds), sorted(DATA["labels"]))


# ---------------------------------------------------------------------------------------------------
# Response validation.


class ArtTourUser(HttpUser):
    """A visitor's app classifying the artworks they photograph, with a little think time."""

    wait_time = staticmethod(lambda: random.uniform(0.05, 0.3))

    def on_start(self) -> None:
        self.path = f"/predictions/{self.environment.parsed_options.model}"

    def _post_image(self, kind: str, **kwargs) -> None:
        opts = self.environment.parsed_options
        with self.client.post(self.path, name=kind, catch_response=True, **kwargs) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                problem = check_prediction(response.json(), DATA["labels"], opts.model)
            except ValueError:
                problem = f"body is not JSON: {response.text[:100]}"
            if problem:
                response.failure(problem)
            else:
                response.success()

    @task(6)
    def raw(self) -> None:
        sample = random.choice(DATA["samples"])
        self._post_image(f"raw {sample.name}", data=sample.data, headers={"Content-Type": sample.content_type})

    @task(2)
    def multipart(self) -> None:
        sample = random.choice(DATA["samples"])
        files = {"image": (f"artwork.{sample.content_type.split('/')[1]}", sample.data, sample.content_type)}
        self._post_image("multipart", files=files)

    @task(1)
    def json_base64(self) -> None:
        sample = random.choice(DATA["samples"])
        self._post_image("json base64", json={"image": base64.b64encode(sample.data).decode("ascii")})

    @task(1)
    def bad_request(self) -> None:
        """Deliberately wrong input: correct behaviour is a 4xx JSON error, never a 200 or a 5xx."""
        name, content_type, body = random.choice(DATA["bad"])
        with self.client.post(
            self.path,
            name=f"{BAD_PREFIX} {name}",
            data=body,
            headers={"Content-Type": content_type},
            catch_response=True,
        ) as response:
            if 400 <= response.status_code < 500 and response.status_code != 429:
                response.success()
            else:
                response.failure(f"expected a 4xx for {name}, got HTTP {response.status_code}")


# ---------------------------------------------------------------------------------------------------
# Load shapes: one class (Locust uses the first shape it finds) following a stages table.


class TourShape(LoadTestShape):
    """``--shape`` as a stages table scaled to ``-u`` (peak users) and ``-t`` (duration)."""

    use_common_options = True
    #: (end of the stage as a fraction of the run, fraction of the peak users)
    STAGES = {
        "steady": ((1.0, 1.0),),
        "stages": ((0.2, 0.25), (0.4, 0.5), (0.7, 1.0), (0.85, 0.5), (1.0, 0.25)),
        "spike": ((0.4, 0.25), (0.6, 1.0), (1.0, 0.25)),
    }

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        duration = opts.run_time or 60
        elapsed = self.get_run_time()
        if elapsed >= duration:
            return None
        peak = opts.num_users or 1
        for end, share in self.STAGES[opts.shape]:
            if elapsed < end * duration:
                users = max(1, round(peak * share))
                return users, opts.spawn_rate or max(1.0, float(users))
        return None


# ---------------------------------------------------------------------------------------------------
# SLO gate.


def image_requests(stats) -> StatsEntry:
    """Latency percentiles over the requests that carry an image (the bad ones are cheap 4xx)."""
    merged = StatsEntry(stats, "image requests", "POST")
    for entry in stats.entries.values():
        if not entry.name.startswith(BAD_PREFIX):
            merged.extend(entry)
    return merged


def slo_verdict(stats, p95_ms: float, p99_ms: float, error_ratio: float) -> dict:
    images, total = image_requests(stats), stats.total
    measured = {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "error_ratio": total.fail_ratio,
        "image_p50_ms": images.get_response_time_percentile(0.5) if images.num_requests else None,
        "image_p95_ms": images.get_response_time_percentile(0.95) if images.num_requests else None,
        "image_p99_ms": images.get_response_time_percentile(0.99) if images.num_requests else None,
    }
    missed = []
    if not total.num_requests:
        missed.append("no requests were made")
    if images.num_requests and measured["image_p95_ms"] > p95_ms:
        missed.append(f"p95 {measured['image_p95_ms']:.0f} ms > {p95_ms:g} ms")
    if images.num_requests and measured["image_p99_ms"] > p99_ms:
        missed.append(f"p99 {measured['image_p99_ms']:.0f} ms > {p99_ms:g} ms")
    if total.fail_ratio > error_ratio:
        missed.append(f"error ratio {total.fail_ratio:.4f} > {error_ratio:g}")
    gates = {"p95_ms": p95_ms, "p99_ms": p99_ms, "error_ratio": error_ratio}
    return {"slo_passed": not missed, "missed": missed, "gates": gates, **measured}


@events.quitting.add_listener
def on_quitting(environment, **_kwargs) -> None:
    opts = environment.parsed_options
    verdict = slo_verdict(environment.stats, opts.slo_p95_ms, opts.slo_p99_ms, opts.slo_error_ratio)
    if verdict["slo_passed"]:
        log.info("SLO met: %s", verdict["gates"])
        environment.process_exit_code = 0
    else:
        log.error("SLO missed: %s", "; ".join(verdict["missed"]))
        environment.process_exit_code = 1
    if opts.slo_report:
        Path(opts.slo_report).write_text(json.dumps(verdict, indent=2) + "\n", encoding="utf-8")
