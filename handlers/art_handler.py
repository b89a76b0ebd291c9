"""TorchServe handler for artserve: the only module that imports ``ts``.

Per batch: find and decode each request's image on its own (a bad one gets its own 4xx JSON error),
classify all the good ones in one forward pass, answer each with the documented JSON body.
"""

from __future__ import annotations

import json
import logging
import os
import time

import torch
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from handlers.errors import InputError
from handlers.labels import read_label_map
from handlers.model import build_model, load_checkpoint
from handlers.payload import extract_image
from handlers.postprocessing import prediction_body, probabilities
from handlers.preprocessing import Limits, normalize, preprocess_bytes

logger = logging.getLogger(__name__)


class ArtHandler(BaseHandler):
    """Batched image classification with per-request errors."""

    def initialize(self, context) -> None:
        props = context.system_properties
        model_dir = props["model_dir"]
        manifest = context.manifest or {}
        self.model_name = manifest.get("model", {}).get("modelName", "art-category")
        serialized = manifest.get("model", {}).get("serializedFile")
        if not serialized:
            raise ValueError("the archive has no serialized checkpoint; build it with `make archive`")

        gpu_id = props.get("gpu_id")
        if torch.cuda.is_available() and gpu_id is not None:
            self.device = torch.device(f"cuda:{gpu_id}")
        else:
            self.device = torch.device("cpu")

        ckpt = load_checkpoint(os.path.join(model_dir, serialized))
        labels = read_label_map(os.path.join(model_dir, "index_to_name.json"))
        self.model, self.labels, self.preprocess_cfg = build_model(ckpt, labels)
        self.model.to(self.device)

        handler_cfg = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        self.top_k = int(handler_cfg.get("top_k", 3))
        self.limits = Limits.from_config(handler_cfg)
        self.model_version = self._model_version(model_dir, manifest)
        self._warm_up()
        self.initialized = True
        logger.info(
            "artserve: %s %s (%s, %d labels) on %s, top_k=%d, limits=%s",
            self.model_name,
            self.model_version,
            ckpt["arch"],
            len(self.labels),
            self.device,
            self.top_k,
            self.limits,
        )

    def _warm_up(self) -> None:
        """One forward pass before READY, so the first client does not pay for lazy initialisation."""
        crop = self.preprocess_cfg.crop
        blank = torch.zeros(1, 3, crop, crop, dtype=torch.uint8, device=self.device)
        with torch.inference_mode():
            self.model(normalize(blank, self.preprocess_cfg))

    @staticmethod
    def _model_version(model_dir: str, manifest: dict) -> str:
        card_path = os.path.join(model_dir, "model_card.json")
        if os.path.exists(card_path):
            with open(card_path, encoding="utf-8") as f:
                card = json.load(f)
            if card.get("version"):
                return str(card["version"])
        return str(manifest.get("model", {}).get("modelVersion", "unknown"))

    def _fields(self, row: dict, context, idx: int) -> tuple[dict, str | None]:
        headers = context.get_all_request_header(idx) or {}
        fields = {}
        for name, value in row.items():
            part = headers.get(name)
            fields[name] = (part.get("content-type") if isinstance(part, dict) else None, value)
        content_type = next((v for k, v in headers.items() if isinstance(v, str) and k.lower() == "content-type"), None)
        return fields, content_type

    def handle(self, data: list, context) -> list:
        start = time.perf_counter()
        results: list = [None] * len(data)
        tensors, good = [], []
        for idx, row in enumerate(data):
            context.set_response_content_type(idx, "application/json")
            try:
                fields, content_type = self._fields(row or {}, context, idx)
                image = extract_image(fields, content_type, self.limits.max_bytes)
                tensors.append(preprocess_bytes(image, self.preprocess_cfg, self.limits))
                good.append(idx)
            except InputError as e:
                results[idx] = e.to_body()
                context.set_response_status(e.status, e.type, idx)
            except Exception:  # a bug or resource error on one request must not fail the batch
                logger.exception("artserve: unexpected error preparing request %d", idx)
                results[idx] = {"error": "internal error while reading the image", "code": 500, "type": "internal"}
                context.set_response_status(500, "internal", idx)
        preprocess_ms = (time.perf_counter() - start) * 1000

        if tensors:
            batch = torch.stack(tensors).to(self.device, non_blocking=True)
            with torch.inference_mode():
                probs = probabilities(self.model(normalize(batch, self.preprocess_cfg))).cpu()
            for row, idx in enumerate(good):
                results[idx] = prediction_body(probs[row], self.labels, self.top_k, self.model_name, self.model_version)
        self._emit_metrics(
            context, len(data), len(data) - len(good), preprocess_ms, (time.perf_counter() - start) * 1000
        )
        return results

    @staticmethod
    def _emit_metrics(context, batch_size: int, rejected: int, preprocess_ms: float, handler_ms: float) -> None:
        metrics = context.metrics
        if metrics is None:
            return
        # Fresh dimension lists each call: TorchServe's add_* append to a shared default list otherwise.
        metrics.add_metric("ArtserveBatchSize", batch_size, "count", dimensions=[], metric_type=MetricTypes.GAUGE)
        metrics.add_counter("ArtserveBatches", 1, dimensions=[])
        metrics.add_counter("ArtserveImages", batch_size, dimensions=[])
        metrics.add_counter("ArtserveRejectedImages", rejected, dimensions=[])
        metrics.add_counter("ArtservePreprocessMs", round(preprocess_ms, 3), dimensions=[])
        metrics.add_counter("ArtserveHandlerMs", round(handler_ms, 3), dimensions=[])
