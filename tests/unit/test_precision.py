"""Serving precision: the setting, its environment override, and detection rather than guessing."""

from __future__ import annotations

import pytest
import torch

from handlers import precision

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: value)

    return set_native


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(native_bf16):
    native_bf16(True)
    assert str(precision.resolve_precision({}, CPU, env={})) == "bf16 + channels_last"
    native_bf16(False)
    p = precision.resolve_precision({"precision": "auto"}, CPU, env={})
    assert (p.name, p.dtype, p.channels_last) == ("fp32", None, False), f"no native bf16 must mean fp32: {p}"


def test_explicit_settings_and_the_environment_override(native_bf16):
    native_bf16(True)
    assert precision.resolve_precision({"precision": "fp32"}, CPU, env={}).dtype is None
    p = precision.resolve_precision({"precision": "fp32"}, CPU, env={"ARTSERVE_PRECISION": "bf16"})
    assert p.dtype == torch.bfloat16, f"ARTSERVE_PRECISION must override the config: {p}"
    p = precision.resolve_precision({"channels_last": False}, CPU, env={})
    assert (p.name, p.channels_last) == ("bf16", False), p
    p = precision.resolve_precision({"precision": "fp32", "channels_last": "true"}, CPU, env={})
    assert (p.name, p.channels_last) == ("fp32", True), p


def test_bad_settings_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="choose one of auto, fp32, bf16, fp16"):
        precision.resolve_precision({"precision": "int8"}, CPU, env={})
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        precision.resolve_precision({"precision": "fp16"}, CPU, env={})
    with pytest.raises(ValueError, match="channels_last"):
        precision.resolve_precision({"channels_last": "sideways"}, CPU, env={})


def test_cpu_flags_come_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    precision.cpu_flags.cache_clear()
    try:
        flags = precision.cpu_flags(str(info))
    finally:
        precision.cpu_flags.cache_clear()
    assert {"avx512f", "avx512_bf16"} <= flags and precision.cpu_has_native_bf16(flags), flags
