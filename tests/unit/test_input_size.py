"""loadtests.input_size: the model's cost by input size, measured in one run and written as a figures file."""

from __future__ import annotations

import json

from handlers.classifier import ArtClassifier
from loadtests import figures, input_size


def test_each_size_gets_its_own_crop_and_the_figures_file_renders(tmp_path):
    for size in (32, 48):
        path = input_size.sized_checkpoint(tmp_path / f"{size}.pt", "tiny_vgg", size)
        assert ArtClassifier.load(path, precision="fp32").preprocess.crop == size
    args = input_size.get_args_parser().parse_args(
        ["--arch", "tiny_vgg", "--sizes", "32", "64", "--seconds", "0.05", "--rounds", "2", "--batch", "2"]
        + ["--precision", "fp32", "--out", str(tmp_path / "out")]
    )
    summary = input_size.main(args)
    assert list(summary["sizes"]) == ["32", "64"] and all(len(r["rounds"]) == 2 for r in summary["sizes"].values())
    assert summary["sizes"]["32"]["cost_per_image_vs_first"] == 1.0, "the first size is the baseline"
    assert summary["sizes"]["64"]["pixels_vs_first"] == 4.0, summary["sizes"]["64"]
    fig = json.loads((tmp_path / "out" / "figures.json").read_text())
    assert [row[0] for row in fig["rows"]] == ["32 px", "64 px"] and fig["headline"][0][0].startswith("model cost")
    assert "| 64 px |" in figures.render(fig, "results/input-size/figures.json"), "the table does not render"
    assert all(fig.get(key) for key in figures.REQUIRED), f"a figures file names date, machine, command, source: {fig}"
