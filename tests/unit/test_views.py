"""training.cache's views: cut side by side (threads, as on CUDA) they are the views cut one after another."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from training.cache import ViewConfig, apply_view, draw_view, step_generator, view_batch


def images() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 64 + 9 * i, 80 - 5 * i), generator=gen, dtype=torch.uint8) for i in range(9)]


def test_threaded_views_equal_the_views_drawn_one_by_one():
    cache = SimpleNamespace(images=images())
    for cfg in (ViewConfig(), ViewConfig(tilt_p=1.0), ViewConfig(tilt_p=0, brightness=0, contrast=0)):
        one = view_batch(cache, range(9), 48, cfg, step_generator(0, 1, 3))
        four = view_batch(cache, range(9), 48, cfg, step_generator(0, 1, 3), threads=4)
        gen = step_generator(0, 1, 3)
        by_hand = torch.stack([apply_view(img, 48, draw_view(*img.shape[1:], cfg, gen)) for img in cache.images])
        assert torch.equal(one, four), f"threads changed the views ({cfg})"
        assert torch.equal(one, by_hand), f"the views are not drawn in the images' order ({cfg})"
        other = view_batch(cache, range(9), 48, cfg, step_generator(0, 1, 4), threads=4)
        assert not torch.equal(one, other), "another step must give other views"


def test_threaded_centre_views_equal_the_sequential_ones():
    cache = SimpleNamespace(images=images())
    one = view_batch(cache, [2, 0, 5], 40, None, torch.Generator(), centre_fraction=224 / 256)
    three = view_batch(cache, [2, 0, 5], 40, None, torch.Generator(), centre_fraction=224 / 256, threads=3)
    assert one.shape == (3, 3, 40, 40) and torch.equal(one, three)
