"""training.probe: frozen-backbone linear probes that choose C on dev and score val, one variant and several."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.imagefolder import make_train_val
from training import probe, teacher_model
from training.cache import ImageCache
from training.data import find_splits, split_dev

CLASSES = ["icons", "prints", "statues"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_train_val(tmp_path_factory.mktemp("data"), CLASSES, per_class=4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random 'ImageNet' state dicts the test writes, so no package weights are needed."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    paths = {}
    for variant in ("lite0", "lite1"):
        paths[variant] = root / f"{variant}.pth"
        torch.save(teacher_model.Teacher(variant, [str(i) for i in range(1000)]).net.state_dict(), paths[variant])
    return paths


def test_probe_chooses_c_on_dev_and_scores_val(tmp_path, data, weights):
    report = probe.probe_variants(
        data, ["lite0", "lite1"], [0.01, 1.0], weights=weights, dev_fraction=0.25, device=torch.device("cpu")
    )
    assert set(report) == {"lite0", "lite1", "lite0+lite1"}, report.keys()
    splits = find_splits(data)
    n_val, n_dev = len(splits.val), len(split_dev(splits.train, 0.25, 0)[1])
    for name, r in report.items():
        by_c = r["dev_macro_f1_by_c"]
        assert set(by_c) == {"0.01", "1.0"}, f"{name}: every C is scored on dev: {by_c}"
        best = max(by_c.values())
        assert by_c[str(r["c"])] == best and r["dev"]["macro_f1"] == best, f"{name}: C is dev's best: {r}"
        if by_c["0.01"] == best:
            assert r["c"] == 0.01, f"{name}: a tie goes to the stronger regularisation: {r}"
        assert r["val"]["n_images"] == n_val and r["dev"]["n_images"] == n_dev, (name, r["val"], r["dev"])
    assert set(report["lite0"]["nearest_train"]) == {"dev", "val"}, "each variant checks dev and val for near-copies"
    assert "nearest_train" not in report["lite0+lite1"], "the side-by-side probe reuses the variants' embeddings"
    assert report["lite0"]["features"] == 1280 and report["lite1"]["features"] == 1280
    assert report["lite0+lite1"]["features"] == 2560, "the combined probe sees both embeddings side by side"


def test_nearest_train_finds_a_near_copy_in_dev_only():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20, 16))
    dev = rng.normal(size=(4, 16))
    dev[1] = 3 * train[7] + 1e-3 * rng.normal(size=16)  # a rescan of a training image: same direction, other scale
    val = -train[:5]  # pointing away from their own training images
    report = probe.nearest_train({"train": train, "dev": dev, "val": val})
    assert report["dev"]["max"] == pytest.approx(1.0, abs=1e-4), report["dev"]
    assert report["dev"]["share_at_least_0.95"] == 0.25 and report["dev"]["share_at_least_0.9"] == 0.25, report
    assert report["val"]["share_at_least_0.9"] == 0.0 and report["val"]["max"] < 0.9, report["val"]
    assert report["dev"]["quantiles"]["0.5"] < 0.9, "the other dev images are not near-copies"
    assert list(probe.line("x", {"c": 1, "dev": EMPTY, "val": EMPTY, "nearest_train": report}).splitlines())[1:] == [
        f"  dev: nearest training image, cosine median {report['dev']['quantiles']['0.5']:.3f}, 0.9 quantile "
        f"{report['dev']['quantiles']['0.9']:.3f}, max 1.000; share >= 0.95: 0.250",
        f"  val: nearest training image, cosine median {report['val']['quantiles']['0.5']:.3f}, 0.9 quantile "
        f"{report['val']['quantiles']['0.9']:.3f}, max {report['val']['max']:.3f}; share >= 0.95: 0.000",
    ]


EMPTY = {"accuracy": 0.0, "macro_f1": 0.0, "per_class": {}}


def test_embed_averages_the_mirror_view_and_keeps_the_classifier(data, weights):
    t = teacher_model.Teacher("lite0", CLASSES)
    t.load_imagenet(weights["lite0"])
    head = t.net._fc
    cache = ImageCache(find_splits(data).val[:2])
    ramp = torch.linspace(0, 255, 64).to(torch.uint8)
    cache.images[0] = ramp.view(1, 1, 64).expand(3, 48, 64).contiguous()  # dark on the left, light on the right
    features = probe.embed(t, cache, torch.device("cpu"), None)
    assert features.shape == (2, 1280) and np.isfinite(features).all()
    assert t.net._fc is head, "embed must put the classifier back"
    t.net._fc = torch.nn.Identity()
    x = probe.view_batch(cache, range(2), t.image_size, None, torch.Generator(), centre_fraction=224 / 256)
    with torch.no_grad():
        plain, mirrored = t(x).numpy(), t(x.flip(3)).numpy()
    np.testing.assert_allclose(features, (plain + mirrored) / 2, rtol=1e-3, atol=1e-4 * np.abs(features).max())
    assert not np.allclose(features[0], plain[0], rtol=1e-2, atol=0), (
        "the mirror view must count (the ramp is not symmetric)"
    )


def test_cli_writes_the_report(tmp_path, data, weights, monkeypatch):
    monkeypatch.setattr(probe, "package_weights", lambda variant: weights[variant])
    args = probe.get_args_parser().parse_args(
        ["--data", str(data), "--variants", "lite0", "--c", "0.1", "--dev-fraction", "0.25", "--device", "cpu"]
        + ["--json", str(tmp_path / "probe.json")]
    )
    report = probe.main(args)
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert saved == json.loads(json.dumps(report)) and set(saved) == {"lite0"}, saved.keys()
