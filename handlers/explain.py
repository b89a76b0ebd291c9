"""Why the model decided: Grad-CAM (Selvaraju et al., 2017) of the top-1 class over the last convolution block.

For each image the activations ``A`` of the last convolution block (before its max-pool; 7x7 at 112 px, 14x14 at
224 px) are weighted by the spatial mean of the gradient of the explained class's logit, summed over channels,
passed through ReLU and scaled to [0, 1] (all zeros when nothing supports the class). Computed in fp32 with the
model in eval mode, so every image of a batch is explained on its own.
"""

from __future__ import annotations

import torch
from torch import nn


def grad_cam(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cams (N, h, w) in [0, 1], explained class indices (N,))`` for a normalised float batch ``x``.

    ``model`` is an ``ArtVGG`` (``features`` ending in a max-pool, ``avgpool``, ``classifier``); ``target``
    defaults to each image's top-1 class.
    """
    features = model.features
    if not isinstance(features[-1], nn.MaxPool2d):
        raise ValueError("Grad-CAM expects the VGG layout: features ending in a max-pool")
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        activations = features[:-1](x.float()).detach().requires_grad_(True)
        logits = model.classifier(torch.flatten(model.avgpool(features[-1](activations)), 1))
        if target is None:
            target = logits.argmax(1)
        chosen = logits.gather(1, target.view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(chosen, activations)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cams = torch.relu((weights * activations.detach()).sum(dim=1))
    peak = cams.flatten(1).amax(dim=1).view(-1, 1, 1)
    cams = torch.where(peak > 0, cams / peak.clamp(min=1e-12), torch.zeros_like(cams))
    return cams, target


def cam_grid(cam: torch.Tensor, decimals: int = 3) -> list[list[float]]:
    """One ``(h, w)`` map as rows of floats for a JSON answer."""
    return [[round(float(v), decimals) for v in row] for row in cam.cpu()]
