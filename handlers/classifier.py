"""The classifier contract, engine-agnostic: request bytes -> uint8 tensor -> probabilities -> answer body.

``ArtClassifier`` is what every front door calls: the TorchServe handler (``art_handler.py``), the naive
baseline server, evaluation, the benchmark and the skew test, so a change to decoding, precision or memory
layout is made here once. One image takes three named steps:

* ``decode``: one request's image bytes -> ``uint8 (3, crop, crop)`` (``preprocessing.preprocess_bytes``),
  or an ``InputError`` that answers that request alone; ``decode_batch`` does a batch's at once, on a CUDA
  classifier decoding its plain JPEGs together on the GPU (``preprocessing.preprocess_batch``), each image
  still getting its own tensor or error;
* ``predict``: a stacked ``uint8`` batch -> float32 probabilities on the CPU, computed on the classifier's
  device with its precision (fp32, bf16 or fp16) and memory layout (channels_last). A classifier made by
  :meth:`ArtClassifier.load` converts the model's weights to that precision and layout once, at load
  (``handler.precision`` / ``handler.channels_last`` in model-config.yaml, ``auto`` by default:
  ``handlers.precision.resolve_precision``); one wrapped around a model that is still training leaves the
  weights alone and autocasts instead;
* ``encode``: one row of probabilities -> the documented JSON body.

``warm_up`` runs one forward pass before the first request; ``explain`` answers the explanations API (Grad-CAM
of the predicted label, always computed in float32). Nothing here imports TorchServe.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from handlers import MODEL_NAME
from handlers.calibration import Calibration
from handlers.card import card_version
from handlers.decode_pool import DecodeBudget, DecodePool
from handlers.errors import InputError
from handlers.explain import cam_grid, grad_cam
from handlers.labels import read_label_map
from handlers.model import build_model, load_checkpoint
from handlers.postprocessing import prediction_body
from handlers.precision import FP32, Precision, resolve_precision
from handlers.preprocessing import (
    Guard,
    Limits,
    PreprocessConfig,
    decode_crop,
    normalize,
    preprocess_batch,
    preprocess_bytes,
)
from handlers.threads import count_setting


def decode_threads(config: Mapping, env: Mapping[str, str] = os.environ) -> int:
    """Threads that decode a batch's images at once: ``ARTSERVE_DECODE_THREADS``, else the ``handler:`` setting
    ``decode_threads``; 0 or unset = torch's intra-op thread count (a worker's OMP_NUM_THREADS)."""
    threads = count_setting(config, "decode_threads", "ARTSERVE_DECODE_THREADS", env, "torch's thread count")
    return threads or torch.get_num_threads()


class ArtClassifier:
    """A model with its preprocessing, labels and answer format, on one device and precision.

    ``labels`` are needed by :meth:`encode` only: evaluation, which scores probabilities, may leave them out.
    ``model`` may be any module (or ``torch.compile`` of one) mapping a normalised batch to logits.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: PreprocessConfig,
        labels: Sequence[str] = (),
        *,
        name: str = MODEL_NAME,
        version: str = "unknown",
        top_k: int = 3,
        limits: Limits = Limits(),
        device: torch.device | str = "cpu",
        precision: Precision = FP32,
        convert: bool = False,
        decode_threads: int = 1,
        calibration: Calibration = Calibration(),
    ) -> None:
        """``calibration``: the temperature applied to the logits and the review policy (identity: none).
        ``convert``: cast the model's weights and layout to ``precision`` now, once (serving); otherwise the
        weights stay as they are and :meth:`predict` autocasts (a model that goes on training in fp32).
        ``decode_threads``: how many of a batch's images :meth:`decode_batch` decodes at once on the CPU."""
        self.model = model.eval()
        self.preprocess, self.labels = preprocess, list(labels)
        self.name, self.version, self.top_k, self.limits = name, version, top_k, limits
        self.calibration = calibration
        self.device, self.precision, self.converted = torch.device(device), precision, convert
        #: Where :meth:`decode_batch` decodes JPEGs: the GPU on CUDA (nvJPEG), else None (Pillow on the CPU).
        self.decode_device = self.device if self.device.type == "cuda" else None
        self.decode_threads = max(1, decode_threads)
        self._decode_pool = ThreadPoolExecutor(self.decode_threads, "artserve-decode") if decode_threads > 1 else None
        if convert:
            layout = torch.channels_last if precision.channels_last else torch.contiguous_format
            self.model.to(device=self.device, dtype=precision.dtype or torch.float32, memory_format=layout)

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike | Mapping,
        *,
        labels_file: str | os.PathLike | None = None,
        card: str | os.PathLike | None = None,
        config: Mapping | None = None,
        device: torch.device | str = "cpu",
        name: str = MODEL_NAME,
        version: str = "unknown",
        precision: str | None = None,
    ) -> ArtClassifier:
        """From a checkpoint (a file, or a dict as :func:`load_checkpoint` returns it).

        ``labels_file`` (``index_to_name.json``) must agree with the checkpoint's labels; the version is
        ``card``'s ``version`` when the card exists and names one, else ``version``; ``config`` is
        model-config.yaml's ``handler:`` section (``top_k``, ``max_bytes``, ``max_pixels``, the limits
        overridable by ``ARTSERVE_MAX_BYTES``/``ARTSERVE_MAX_PIXELS``; ``precision`` and ``channels_last``,
        overridable by ``ARTSERVE_PRECISION``/``ARTSERVE_CHANNELS_LAST``; ``decode_threads``, overridable by
        ``ARTSERVE_DECODE_THREADS``: 0 or unset = torch's thread count). ``precision`` (auto, fp32, bf16,
        fp16) overrides both config and environment: evaluation and export compare named precisions.
        """
        ckpt = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint)
        model, labels, preprocess = build_model(ckpt, read_label_map(labels_file) if labels_file else None)
        config = dict(config or {})
        if precision is not None:  # a named precision: neither the config's nor the environment's
            config.pop("channels_last", None)
            config["precision"] = precision
        device = torch.device(device)
        chosen = resolve_precision(config, device, env={} if precision is not None else os.environ)
        return cls(
            model.to(device),
            preprocess,
            labels,
            name=name,
            version=card_version(card, version),
            top_k=int(config.get("top_k", 3)),
            limits=Limits.from_config(config),
            device=device,
            precision=chosen,
            convert=True,
            decode_threads=decode_threads(config),
            calibration=Calibration.from_checkpoint(ckpt),
        )

    #: Decodes on the CPU in child processes with a deadline and a memory budget (:meth:`guard_decoding`); None:
    #: in this process.
    _guard: Guard | None = None

    def guard_decoding(self, budget: DecodeBudget) -> None:
        """From now on decode each CPU image in a child process, within ``budget``'s time per image and memory per
        classifier (``decode_pool``; serving); ``budget.timeout_s`` 0 leaves decoding in this process."""
        if budget.timeout_s > 0:
            work = functools.partial(decode_crop, cfg=self.preprocess, limits=self.limits)
            self._guard = DecodePool(work, self.decode_threads, budget, draft_size=self.preprocess.resize)

    def decode(self, data: bytes) -> torch.Tensor:
        """One request's image bytes -> ``uint8 (3, crop, crop)``; raises an ``InputError`` for bad input."""
        return preprocess_bytes(data, self.preprocess, self.limits, self._guard)

    def decode_batch(self, items: Sequence[bytes]) -> list[torch.Tensor | InputError]:
        """Many requests' image bytes -> for each, ``uint8 (3, crop, crop)`` (on :attr:`decode_device` when it
        decoded there) or the ``InputError`` that answers that request alone."""
        items = list(items)
        return preprocess_batch(items, self.preprocess, self.limits, self.decode_device, self._decode_pool, self._guard)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """``uint8 (N, 3, H, W)`` on any device -> float32 probabilities ``(N, classes)`` on the CPU, calibrated
        by the checkpoint's temperature when it has one."""
        x = batch.to(self.device, non_blocking=True)
        if self.precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self.precision.dtype
        with torch.inference_mode():
            if self.converted:  # weights already in dtype: the input follows them, no per-call casts
                logits = self.model(normalize(x, self.preprocess).to(dtype or torch.float32))
            else:
                with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                    logits = self.model(normalize(x, self.preprocess))
            return self.calibration.probabilities(logits).cpu()

    def encode(self, probs: torch.Tensor) -> dict:
        """One image's probabilities -> the answer body (label, probability, top_k, model, model_version; with a
        review policy also ``review``, ``review_below`` and ``review_max_error``)."""
        if not self.labels:
            raise ValueError("this classifier was built without labels, so it cannot encode answers")
        cal = self.calibration
        return prediction_body(probs, self.labels, self.top_k, self.name, self.version, cal.review_below, cal.max_error)

    def warm_up(self) -> None:
        """One forward pass before the first request, so the first client does not pay for lazy initialisation."""
        crop = self.preprocess.crop
        self.predict(torch.zeros(1, 3, crop, crop, dtype=torch.uint8))

    def __str__(self) -> str:
        arch = getattr(self.model, "arch", type(self.model).__name__)
        return (
            f"{self.name} {self.version} ({arch}, {len(self.labels)} labels) on {self.device}, {self.precision}, "
            f"top_k={self.top_k}, limits={self.limits}, decode threads {self.decode_threads}"
        )

    def explain(self, batch: torch.Tensor) -> list[dict]:
        """``uint8 (N, 3, H, W)`` -> one explanation body per image: the predicted label (as :meth:`predict` and
        the predictions endpoint give it) with its Grad-CAM map over the last convolution block.

        Grad-CAM needs gradients, so it runs outside inference mode and always in float32, whatever precision
        :meth:`predict` uses: autocast is off for the pass, and when the weights themselves are stored in a lower
        precision, a float32 copy of the model (made once, kept for later calls) computes it; the served model
        is never changed. ``crop_fraction`` (crop / resize) says which centred square of the image, as a
        fraction of its shorter side, the map covers.
        """
        probs = self.predict(batch)
        with torch.inference_mode(False):
            x = normalize(batch.to(self.device), self.preprocess)
            cams, targets = grad_cam(self._fp32_model(), x, probs.argmax(1).to(self.device))
        crop_fraction = round(self.preprocess.crop / self.preprocess.resize, 6)
        bodies = []
        for row, cam, target in zip(probs, cams.cpu(), targets.tolist(), strict=True):
            answer = self.encode(row)
            bodies.append(
                {
                    "label": answer["label"],
                    "probability": answer["probability"],
                    "explains": self.labels[target],
                    "method": "grad-cam",
                    "cam": cam_grid(cam),
                    "height": int(cam.shape[0]),
                    "width": int(cam.shape[1]),
                    "crop_fraction": crop_fraction,
                    "model": self.name,
                    "model_version": self.version,
                }
            )
        return bodies

    def _fp32_model(self) -> nn.Module:
        """The served module when its weights are float32, else a float32 copy of it (cached)."""
        model = getattr(self.model, "_orig_mod", self.model)  # the module under a torch.compile wrapper
        if all(p.dtype == torch.float32 for p in model.parameters()):
            return model
        if getattr(self, "_fp32_copy", None) is None:
            self._fp32_copy = copy.deepcopy(model).float().eval()
        return self._fp32_copy
