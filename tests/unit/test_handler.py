"""The TorchServe handler in-process, with TorchServe's own Context class and a recording metrics fake."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import torch

from handlers.art_handler import ArtHandler
from handlers.labels import write_label_map
from handlers.model import build_model, load_checkpoint
from handlers.postprocessing import probabilities
from handlers.preprocessing import normalize, preprocess_bytes
from handlers.threads import cpu_budget
from loadtests.harness import TINY_PREPROCESS, random_checkpoint
from tests.images import ART5_LABELS, corrupt_jpeg, jpeg, png_bomb

ts_context = pytest.importorskip("ts.context")


class RecordingMetrics:
    def __init__(self):
        self.calls = []

    def add_metric(self, name, value, unit, idx=None, dimensions=None, metric_type=None):
        self.calls.append((name, value))

    def add_counter(self, name, value, idx=None, dimensions=None):
        self.calls.append((name, value))

    def values(self, name):
        return [v for n, v in self.calls if n == name]


def model_dir(tmp_path: Path, labels=ART5_LABELS, card: dict | None = None) -> Path:
    random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg")
    write_label_map(tmp_path / "index_to_name.json", labels)
    if card is not None:
        (tmp_path / "model_card.json").write_text(json.dumps(card))
    return tmp_path


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """initialize() sets torch's thread count for the whole process, as it does in a worker."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_context(directory: Path, headers: list[dict], yaml_config: dict | None = None):
    manifest = {"model": {"modelName": "art-category", "serializedFile": "tiny.pt", "modelVersion": "1.0"}}
    ctx = ts_context.Context(
        "art-category", str(directory), manifest, 8, None, "0.12.0", metrics=RecordingMetrics(),
        model_yaml_config=yaml_config or {"handler": {"top_k": 2}},
    )  # fmt: skip
    ctx.request_processor = [ts_context.RequestProcessor(h) for h in headers]
    return ctx


def initialized(directory: Path, n_requests: int, yaml_config: dict | None = None):
    ctx = make_context(directory, [{} for _ in range(n_requests)], yaml_config)
    handler = ArtHandler()
    handler.initialize(ctx)
    return handler, ctx


def raw_request(data: bytes, ct: str = "image/jpeg") -> tuple[dict, dict]:
    return {"body": data}, {"body": {"content-type": ct}, "Content-Type": ct}


def run_batch(handler, ctx, requests):
    ctx.request_processor = [ts_context.RequestProcessor(h) for _, h in requests]
    return handler.handle([row for row, _ in requests], ctx)


def test_mixed_batch_answers_each_request_on_its_own(tmp_path):
    directory = model_dir(tmp_path, card={"version": "test-card-1"})
    good = jpeg(seed=1)
    requests = [
        raw_request(good),
        raw_request(corrupt_jpeg()),
        raw_request(b"plain text", "text/plain"),
        raw_request(png_bomb(9000), "image/png"),
        ({"body": json.dumps({"image": base64.b64encode(good).decode()}).encode()},
         {"body": {"content-type": "application/json"}, "Content-Type": "application/json"}),
        ({"image": good}, {"image": {"content-type": "image/jpeg"}, "Content-Type": "multipart/form-data; boundary=x"}),
    ]  # fmt: skip
    handler, ctx = initialized(directory, len(requests))
    out = run_batch(handler, ctx, requests)

    statuses = [ctx.get_response_status(i)[0] or 200 for i in range(len(requests))]
    assert statuses == [200, 400, 415, 413, 200, 200], f"per-request statuses: {statuses}"
    for i in (1, 2, 3):
        assert set(out[i]) == {"error", "code", "type"} and out[i]["code"] == statuses[i], f"error body {i}: {out[i]}"
    for i in (0, 4, 5):
        body = out[i]
        assert body["model"] == "art-category" and body["model_version"] == "test-card-1", body
        assert body["label"] in ART5_LABELS and len(body["top_k"]) == 2, body
        assert body["top_k"][0]["label"] == body["label"], body
        assert body["top_k"][0]["probability"] >= body["top_k"][1]["probability"], body
    assert out[0]["top_k"] == out[4]["top_k"] == out[5]["top_k"], (
        "the same image must get the same answer in any encoding"
    )
    types = [ctx.get_response_content_type(i) for i in range(len(requests))]
    assert types == ["application/json"] * len(requests), f"response content types: {types}"

    metrics = ctx.metrics
    assert metrics.values("ArtserveBatchSize") == [6], f"batch-size metric: {metrics.calls}"
    assert metrics.values("ArtserveRejectedImages") == [3], f"rejected metric: {metrics.calls}"


def test_prediction_equals_in_process_model(tmp_path):
    directory = model_dir(tmp_path)
    handler, ctx = initialized(directory, 1, {"handler": {"top_k": 5, "precision": "fp32"}})
    data = jpeg(seed=7)
    out = run_batch(handler, ctx, [raw_request(data)])[0]

    model, labels, cfg = build_model(load_checkpoint(directory / "tiny.pt"))
    assert cfg == TINY_PREPROCESS, f"the checkpoint's preprocessing is {cfg}"
    with torch.inference_mode():
        probs = probabilities(model(normalize(preprocess_bytes(data, cfg)[None], cfg)))[0]
    expected = {labels[i]: float(p) for i, p in enumerate(probs)}
    served = {d["label"]: d["probability"] for d in out["top_k"]}
    assert served.keys() == expected.keys(), f"top_k=5 must list all 5 labels: {served}"
    for label, p in served.items():
        assert abs(p - expected[label]) < 1e-5, f"{label}: served {p}, in-process {expected[label]}"
    assert abs(sum(served.values()) - 1) < 1e-4, f"softmax probabilities must sum to 1, got {sum(served.values())}"


def test_reduced_precision_is_converted_once_reported_and_close_to_fp32(tmp_path, monkeypatch):
    directory = model_dir(tmp_path)
    images = [raw_request(jpeg(seed=s)) for s in range(4)]
    monkeypatch.setenv("ARTSERVE_PRECISION", "fp32")
    reference, ctx32 = initialized(directory, 4, {"handler": {"top_k": 5, "precision": "bf16"}})
    assert str(reference.classifier.precision) == "fp32", "ARTSERVE_PRECISION must override model-config.yaml"
    fp32 = run_batch(reference, ctx32, images)
    monkeypatch.delenv("ARTSERVE_PRECISION")
    handler, ctx = initialized(directory, 4, {"handler": {"top_k": 5, "precision": "bf16"}})
    dtypes = {p.dtype for p in handler.classifier.model.parameters()}
    assert dtypes == {torch.bfloat16}, f"bf16 weights must be converted once at load, found {dtypes}"
    bf16 = run_batch(handler, ctx, images)
    assert ctx.get_response_headers(0).get("X-Artserve-Precision") == "bf16 + channels_last", ctx.get_response_headers(
        0
    )
    assert ctx.metrics.values("ArtservePrecision") == [1], f"precision gauge missing: {ctx.metrics.calls}"
    for a, b in zip(fp32, bf16, strict=True):
        pa = {d["label"]: d["probability"] for d in a["top_k"]}
        pb = {d["label"]: d["probability"] for d in b["top_k"]}
        worst = max(abs(pa[k] - pb[k]) for k in pa)
        assert worst < 0.02, f"bf16 answer too far from fp32 ({worst:.4f}): {a} vs {b}"


def test_all_bad_batch_runs_no_forward_pass(tmp_path):
    handler, ctx = initialized(model_dir(tmp_path), 2)
    out = run_batch(handler, ctx, [raw_request(b""), raw_request(b"x", "application/x-www-form-urlencoded")])
    assert [ctx.get_response_status(i)[0] for i in range(2)] == [400, 415], out
    assert out[0]["type"] == "bad_image" and out[1]["type"] == "unsupported_media_type", out


def test_unexpected_error_fails_only_that_request(tmp_path, monkeypatch):
    """A non-input error while decoding one image (here a MemoryError) fails the batch decode; the handler then
    decodes image by image, so only that request gets the 500."""
    handler, ctx = initialized(model_dir(tmp_path), 2)
    import handlers.preprocessing as mod

    real = mod.load_rgb

    def flaky(img, draft_size=None):
        if img.size == (97, 65):
            raise MemoryError("simulated")
        return real(img, draft_size)

    monkeypatch.setattr(mod, "load_rgb", flaky)
    out = run_batch(handler, ctx, [raw_request(jpeg((97, 65))), raw_request(jpeg())])
    assert ctx.get_response_status(0)[0] == 500 and out[0]["type"] == "internal", out[0]
    assert ctx.get_response_status(1)[0] in (None, 200) and "label" in out[1], out[1]


def test_model_version_falls_back_to_manifest(tmp_path):
    handler, ctx = initialized(model_dir(tmp_path), 1)
    version = handler.classifier.version
    assert version == "1.0", f"without a model card the archive version is used, got {version}"


def test_missing_label_map_fails_at_load(tmp_path):
    directory = model_dir(tmp_path)
    (directory / "index_to_name.json").unlink()
    with pytest.raises(ValueError, match="label map .* is missing"):
        initialized(directory, 1)


def test_label_map_disagreeing_with_weights_fails_at_load(tmp_path):
    directory = model_dir(tmp_path)
    write_label_map(directory / "index_to_name.json", ["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="does not match the labels the weights were trained with"):
        initialized(directory, 1)
    write_label_map(directory / "index_to_name.json", ART5_LABELS[:4])
    with pytest.raises(ValueError, match="4 labels for a model with 5 outputs"):
        initialized(directory, 1)


def test_archive_without_checkpoint_fails_clearly(tmp_path):
    directory = model_dir(tmp_path)
    shutil.move(directory / "tiny.pt", directory / "other.pt")
    with pytest.raises(FileNotFoundError):
        initialized(directory, 1)


def explain_request(data: bytes, ct: str = "image/jpeg") -> tuple[dict, dict]:
    """A request as TorchServe's frontend passes one from ``POST /explanations/<model>``."""
    row, headers = raw_request(data, ct)
    return row, {**headers, "explain": "True"}


def test_explanations_mixed_with_predictions_and_errors_in_one_batch(tmp_path):
    handler, ctx = initialized(model_dir(tmp_path, card={"version": "test-card-1"}), 4)
    image = jpeg(seed=3)
    requests = [explain_request(image), raw_request(image), explain_request(corrupt_jpeg()), explain_request(image)]
    out = run_batch(handler, ctx, requests)

    statuses = [ctx.get_response_status(i)[0] or 200 for i in range(len(requests))]
    assert statuses == [200, 200, 400, 200], f"per-request statuses: {statuses}"
    assert out[2]["type"] == "bad_image", f"the corrupt image's explanation must be its own 400: {out[2]}"
    assert "top_k" in out[1] and "cam" not in out[1], f"a prediction request got an explanation: {out[1]}"
    keys = {"label", "probability", "explains", "method", "cam", "height", "width", "crop_fraction", "model"}
    for body in (out[0], out[3]):
        assert keys | {"model_version"} == set(body), f"explanation body keys: {sorted(body)}"
        assert body["label"] == out[1]["label"] == body["explains"], f"explains another label: {body['explains']}"
        assert abs(body["probability"] - out[1]["probability"]) < 1e-5, "explanation and prediction disagree"
        assert body["method"] == "grad-cam" and body["model_version"] == "test-card-1", body
        cam = body["cam"]
        assert (body["height"], body["width"]) == (4, 4) and len(cam) == 4 and {len(r) for r in cam} == {4}, cam
        assert all(0.0 <= v <= 1.0 for r in cam for v in r), f"cam values outside [0, 1]: {cam}"
        assert body["crop_fraction"] == round(TINY_PREPROCESS.crop / TINY_PREPROCESS.resize, 6), body
    assert out[0]["cam"] == out[3]["cam"], "the same image must get the same map in one batch"
    assert ctx.metrics.values("ArtserveRejectedImages") == [1], f"rejected metric: {ctx.metrics.calls}"


def test_device_decode_path_answers_per_request(tmp_path):
    """The handler with the classifier decoding JPEGs as on CUDA (here on the CPU device): one corrupt JPEG in the
    batch gets its own 400, the others the answers the CPU path gives."""
    handler, ctx = initialized(model_dir(tmp_path), 3)
    corrupt = jpeg()[:200] + bytes(range(256)) * 8 + b"\xff\xd9"  # reaches the device decoder, which refuses it
    images = [jpeg((300, 200), seed=1), corrupt, jpeg((120, 90), seed=2)]
    expected = run_batch(handler, ctx, [raw_request(images[0]), raw_request(images[2])])
    handler.classifier.decode_device = torch.device("cpu")
    out = run_batch(handler, ctx, [raw_request(data) for data in images])
    assert ctx.get_response_status(1)[0] == 400 and out[1]["type"] == "bad_image", f"corrupt JPEG: {out[1]}"
    for got, want in zip((out[0], out[2]), expected, strict=True):
        assert got["label"] == want["label"], f"device path answered {got}, CPU path {want}"
        assert abs(got["probability"] - want["probability"]) < 0.02, f"device path {got} vs CPU path {want}"


def test_initialize_gives_each_worker_its_share_of_the_cpus(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("ARTSERVE_TORCH_THREADS", raising=False)
    budget = min(cpu_budget(), torch.get_num_threads())
    initialized(model_dir(tmp_path), 1, {"maxWorkers": 2, "handler": {"top_k": 2}})
    assert torch.get_num_threads() == max(1, budget // 2), f"two workers on {budget} CPUs"
    initialized(model_dir(tmp_path), 1, {"maxWorkers": 1, "handler": {"top_k": 2, "torch_threads": 3}})
    assert torch.get_num_threads() == 3, "the handler setting must be applied"
