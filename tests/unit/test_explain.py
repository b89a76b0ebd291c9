"""Grad-CAM: shape, range, per-image independence, and that it points at the evidence."""

from __future__ import annotations

import pytest
import torch

from handlers.explain import cam_grid, grad_cam
from handlers.model import ArtVGG


def test_grad_cam_shape_range_and_batch_independence():
    torch.manual_seed(0)
    model = ArtVGG(3, "tiny_vgg").eval()
    x = torch.randn(4, 3, 64, 64)
    cams, target = grad_cam(model, x)
    assert cams.shape == (4, 4, 4), f"tiny_vgg at 64 px has a 4x4 last block (before its pool), got {cams.shape}"
    assert float(cams.min()) >= 0 and float(cams.max()) <= 1, f"maps must lie in [0, 1]: {cams.min()}..{cams.max()}"
    assert torch.equal(target, model(x).argmax(1)), "the default target must be the top-1 class"
    alone, _ = grad_cam(model, x[2:3])
    assert torch.allclose(alone[0], cams[2], atol=1e-5), "an image's map must not depend on its batch"
    other, t = grad_cam(model, x, torch.tensor([1, 1, 1, 1]))
    assert t.tolist() == [1, 1, 1, 1], t
    grid = cam_grid(cams[0])
    assert len(grid) == 4 and all(len(r) == 4 for r in grid), grid


def test_grad_cam_points_at_the_region_that_drives_the_class():
    """Channel 0 holds what is in the right half, channel 1 what is in the left half; the class-1 logit reads
    channel 0 only, so Grad-CAM must light up the right half and leave the left half dark."""

    class RightHalf(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Identity(), torch.nn.MaxPool2d(1))
            self.avgpool = torch.nn.Identity()

        def classifier(self, flat: torch.Tensor) -> torch.Tensor:
            evidence = flat.view(-1, 2, 8, 8)[:, 0].mean(dim=(1, 2))
            return torch.stack([-evidence, evidence], dim=1)

    x = torch.zeros(1, 2, 8, 8)
    x[0, 0, :, 4:] = torch.rand(8, 4) + 0.1
    x[0, 1, :, :4] = torch.rand(8, 4) + 0.1
    cams, target = grad_cam(RightHalf(), x, torch.tensor([1]))
    assert float(cams[0, :, :4].max()) == pytest.approx(0.0), "the left half does not drive class 1"
    assert float(cams[0, :, 4:].min()) > 0, "the right half drives class 1 and must be highlighted"
