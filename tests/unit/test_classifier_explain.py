"""ArtClassifier.explain: the engine-agnostic explanation, in float32 whatever precision predict runs in."""

from __future__ import annotations

import torch

from handlers.classifier import ArtClassifier
from handlers.explain import grad_cam
from handlers.preprocessing import normalize
from loadtests.harness import LABELS, random_checkpoint
from tests.images import jpeg


def classifier(tmp_path, **kwargs) -> ArtClassifier:
    base = ArtClassifier.load(random_checkpoint(tmp_path / "tiny.pt", "tiny_vgg"), precision="fp32")
    return ArtClassifier(base.model, base.preprocess, LABELS, **kwargs)


def test_explain_matches_grad_cam_in_fp32_and_leaves_a_bf16_model_unchanged(tmp_path):
    fp32 = classifier(tmp_path)
    batch = torch.stack([fp32.decode(jpeg(seed=s)) for s in (1, 2)])
    expected, _ = grad_cam(fp32.model, normalize(batch, fp32.preprocess), fp32.predict(batch).argmax(1))
    bodies = fp32.explain(batch)
    got = torch.tensor([b["cam"] for b in bodies])
    assert torch.allclose(got, expected, atol=1e-3), "explain must be Grad-CAM of the predicted label"

    bf16 = ArtClassifier.load(tmp_path / "tiny.pt", precision="bf16")  # weights converted to bf16 at load
    with torch.inference_mode():  # as a serving engine may call it
        low = bf16.explain(batch)
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters()), "explain changed the served model"
    assert [b["label"] for b in low] == [b["label"] for b in bodies], "bf16 weights changed the predicted labels"
    diff = (torch.tensor([b["cam"] for b in low]) - got).abs().max()
    assert diff < 0.1, f"the float32 copy of bf16 weights should give nearly the same map (max diff {diff:.3f})"
