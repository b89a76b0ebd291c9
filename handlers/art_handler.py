"""TorchServe handler for artserve: the only module that imports ``ts``; the classifier does the work.

Per batch: find each request's image on its own, decode them together (``ArtClassifier.decode_batch``: on CUDA
the batch's JPEGs in one nvJPEG call; a bad image gets its own 4xx JSON error), classify all the good ones in one
forward pass, answer each with the documented JSON body, and emit
the handler's metrics. Requests of the explanations API (``POST /explanations/<model>``: TorchServe's
frontend marks each with the request header ``explain: True``) get Grad-CAM answers (``ArtClassifier.explain``)
instead; a batch may mix both kinds, so the header is read per request, not for request 0 alone as
TorchServe's ``BaseHandler._is_explain`` does. Decoding, prediction, explanation and the answer are
``ArtClassifier``'s (``classifier.py``); ``initialize`` gives its CPU decoding the worker's decode budgets
(``decode_pool.DecodeBudget``: a child process per decode thread, a deadline per image, a memory budget).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from handlers import MODEL_NAME
from handlers.card import ARCHIVE_CARD
from handlers.classifier import ArtClassifier
from handlers.decode_pool import DecodeBudget
from handlers.errors import InputError
from handlers.payload import extract_image
from handlers.threads import torch_threads

logger = logging.getLogger(__name__)

#: Response header naming the precision and layout the answer was computed in, e.g. ``bf16 + channels_last``.
PRECISION_HEADER = "X-Artserve-Precision"


class ArtHandler(BaseHandler):
    """Batched image classification with per-request errors."""

    def initialize(self, context) -> None:
        props = context.system_properties
        model_dir = Path(props["model_dir"])
        model = (context.manifest or {}).get("model", {})
        if not model.get("serializedFile"):
            raise ValueError("the archive has no serialized checkpoint; build it with `make archive`")
        gpu_id = props.get("gpu_id")
        device = f"cuda:{gpu_id}" if torch.cuda.is_available() and gpu_id is not None else "cpu"
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        config = yaml_config.get("handler") or {}
        # before anything runs on torch's thread pool; the most workers this model may have share the CPUs
        workers = int(yaml_config.get("maxWorkers") or yaml_config.get("minWorkers") or 1)
        threads, why = torch_threads(config, workers)
        torch.set_num_threads(threads)
        logger.info("artserve: %d torch thread(s) in this worker (%s)", threads, why)
        self.classifier = ArtClassifier.load(
            model_dir / model["serializedFile"],
            labels_file=model_dir / "index_to_name.json",
            card=model_dir / ARCHIVE_CARD,
            config=config,
            device=device,
            name=model.get("modelName", MODEL_NAME),
            version=str(model.get("modelVersion", "unknown")),
        )
        budget = DecodeBudget.from_config(config)
        self.classifier.guard_decoding(budget)
        logger.info("artserve: decode budget %s", budget)
        self.classifier.warm_up()
        self.initialized = True
        logger.info("artserve: %s", self.classifier)

    def _image(self, row: dict, context, idx: int) -> bytes:
        """Request ``idx``'s image bytes, from its parts and their Content-Types (an ``InputError`` if none)."""
        headers = context.get_all_request_header(idx) or {}
        fields = {}
        for name, value in row.items():
            part = headers.get(name)
            fields[name] = (part.get("content-type") if isinstance(part, dict) else None, value)
        content_type = next((v for k, v in headers.items() if isinstance(v, str) and k.lower() == "content-type"), None)
        return extract_image(fields, content_type, self.classifier.limits.max_bytes)

    def handle(self, data: list, context) -> list:
        start = time.perf_counter()
        results: list = [None] * len(data)
        images: dict[int, bytes] = {}
        for idx, row in enumerate(data):
            context.set_response_content_type(idx, "application/json")
            context.set_response_header(idx, PRECISION_HEADER, str(self.classifier.precision))
            try:
                images[idx] = self._image(row or {}, context, idx)
            except Exception as e:  # answered per request
                self._reject(results, context, idx, e)
        decoded: dict[int, torch.Tensor] = {}
        try:
            batch = self.classifier.decode_batch(list(images.values()))
        except Exception:  # a bug or resource error in a batch decode: each image alone, so it stays per request
            logger.exception("artserve: batch decode failed; decoding image by image")
            batch = [self._decode_one(image) for image in images.values()]
        for idx, item in zip(images, batch, strict=True):
            if isinstance(item, Exception):
                self._reject(results, context, idx, item)
            else:
                decoded[idx] = item
        good = [idx for idx in decoded if not self._is_explain_request(context, idx)]
        explain = [idx for idx in decoded if idx not in good]
        preprocess_ms = (time.perf_counter() - start) * 1000

        if good:
            probs = self.classifier.predict(torch.stack([decoded[idx] for idx in good]))
            for row, idx in enumerate(good):
                results[idx] = self.classifier.encode(probs[row])
        if explain:
            bodies = self.classifier.explain(torch.stack([decoded[idx] for idx in explain]))
            for idx, body in zip(explain, bodies, strict=True):
                results[idx] = body
        rejected = len(data) - len(decoded)
        self._emit_metrics(context, len(data), rejected, preprocess_ms, (time.perf_counter() - start) * 1000)
        return results

    def _decode_one(self, image: bytes) -> torch.Tensor | Exception:
        try:
            return self.classifier.decode(image)
        except Exception as e:  # answered per request
            return e

    @staticmethod
    def _reject(results: list, context, idx: int, error: Exception) -> None:
        """Answer request ``idx`` alone: its ``InputError``'s 4xx, or a 500 for anything else (logged)."""
        if isinstance(error, InputError):
            results[idx] = error.to_body()
            context.set_response_status(error.status, error.type, idx)
            return
        logger.error("artserve: unexpected error preparing request %d", idx, exc_info=error)
        results[idx] = {"error": "internal error while reading the image", "code": 500, "type": "internal"}
        context.set_response_status(500, "internal", idx)

    @staticmethod
    def _is_explain_request(context, idx: int) -> bool:
        """TorchServe's frontend sets the header ``explain: True`` on requests to ``/explanations/<model>``."""
        headers = context.get_all_request_header(idx) or {}
        return any(k.lower() == "explain" and str(v).lower() == "true" for k, v in headers.items())

    def _emit_metrics(self, context, batch_size: int, rejected: int, preprocess_ms: float, handler_ms: float) -> None:
        metrics = context.metrics
        if metrics is None:
            return
        # Fresh dimension lists each call: TorchServe's add_* append to a shared default list otherwise.
        metrics.add_metric("ArtserveBatchSize", batch_size, "count", dimensions=[], metric_type=MetricTypes.GAUGE)
        precision = [Dimension("Precision", str(self.classifier.precision).replace(" ", ""))]
        metrics.add_metric("ArtservePrecision", 1, "count", dimensions=precision, metric_type=MetricTypes.GAUGE)
        metrics.add_counter("ArtserveBatches", 1, dimensions=[])
        metrics.add_counter("ArtserveImages", batch_size, dimensions=[])
        metrics.add_counter("ArtserveRejectedImages", rejected, dimensions=[])
        metrics.add_counter("ArtservePreprocessMs", round(preprocess_ms, 3), dimensions=[])
        metrics.add_counter("ArtserveHandlerMs", round(handler_ms, 3), dimensions=[])
