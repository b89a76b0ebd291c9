"""Shared fixtures: a tiny VGG-shaped checkpoint, its .mar, and a real TorchServe serving it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deploy.archive import build_archive
from deploy.serve import Ports, Server, start_server
from handlers.model import ArtVGG, save_checkpoint
from handlers.preprocessing import PreprocessConfig
from tests.images import ART5_LABELS

TINY_PREPROCESS = PreprocessConfig(resize=72, crop=64)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ARTSERVE_REQUIRE_TOOLS=1 (set by .ci/run), a test skipped because a tool is missing (kubectl,
    promtool, chromium, curl) fails instead: CI must not pass by skipping what it is there to check."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ARTSERVE_REQUIRE_TOOLS") == "1":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "not installed" in reason:
            report.outcome = "failed"
            report.longrepr = f"ARTSERVE_REQUIRE_TOOLS=1 and a required tool is missing: {reason}"


def make_tiny_checkpoint(path: Path, seed: int = 0, labels: list[str] = ART5_LABELS) -> Path:
    """A tiny_vgg checkpoint with random weights: a plumbing fixture, never presented as a classifier."""
    torch.manual_seed(seed)
    save_checkpoint(path, ArtVGG(len(labels), "tiny_vgg"), labels, TINY_PREPROCESS)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_mar(tiny_checkpoint, tmp_path_factory) -> Path:
    return build_archive(tiny_checkpoint, tmp_path_factory.mktemp("store"))


def run_server(mar: Path, run_dir: Path, overrides: dict | None = None, env: dict | None = None):
    """Start TorchServe on free loopback ports; a generator that always stops it."""
    server = start_server(mar, run_dir, Ports.free(), bind="127.0.0.1", overrides=overrides, env=env)
    try:
        server.wait_ready(180)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ts_server(tiny_mar, tmp_path_factory) -> Server:
    """One real TorchServe for the session, serving the tiny model with the checked-in configuration."""
    yield from run_server(tiny_mar, tmp_path_factory.mktemp("ts-run"))
