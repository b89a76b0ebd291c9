"""make bench's worker accounting against a real TorchServe: the handler's counters over a measured window."""

from __future__ import annotations

import argparse

from loadtests import bench_measure
from tests.images import pattern


def test_measure_reports_where_the_workers_time_went(ts_server, tmp_path):
    images = []
    for i in range(4):
        images.append(tmp_path / f"{i}.jpg")
        pattern((120 + 10 * i, 90), seed=i).save(images[-1], quality=90)
    args = argparse.Namespace(clients=2, warmup=1.0, duration=3.0)
    result = bench_measure.measure(ts_server.predict_url, images, args, metrics_url=ts_server.metrics_url, workers=1)
    assert result["requests"] > 0 and result["errors"] == 0, result
    spent = result["worker_time"]
    assert 0 < spent["in_handler"] <= 1.05, f"handler time must be a share of the window: {spent}"
    assert 0 < spent["decode"] < spent["in_handler"], spent
    assert abs(spent["decode"] + spent["predict"] - spent["in_handler"]) <= 0.002, spent
    assert abs(spent["in_handler"] + spent["outside_handler"] - 1) <= 0.002, spent
    assert 1 <= spent["mean_batch"] <= 2, f"two clients cannot fill a batch beyond 2: {spent}"
    assert spent["predict_img_s"] >= result["img_s"], "the predict step alone is at least as fast as served"
