"""Dart's device: CUDA provider options as data (an int device_id), the providers really in use, and no
silent CPU fallback on a GPU instance (checked against this machine's real onnxruntime, which has no CUDA)."""

from __future__ import annotations

import logging

import pytest

from sotai.dart.session import CPU, CUDA, DartDevice, OnnxDecoder, check_providers, ort_device, preload_cuda_libraries
from sotai.errors import SotaiError


def test_provider_options_follow_the_triton_instance():
    gpu = DartDevice.for_instance({"model_instance_kind": "GPU", "model_instance_device_id": "3"})
    assert gpu == DartDevice("gpu", 3, "fail")
    assert gpu.providers() == [(CUDA, {"device_id": 3}), CPU]
    assert isinstance(gpu.providers()[0][1]["device_id"], int)  # ORT's OrtValue device wants an int
    assert DartDevice.for_instance({"model_instance_kind": "CPU"}).providers() == [CPU]
    with pytest.raises(SotaiError, match="cpu_fallback='maybe'"):
        DartDevice.for_instance({"model_instance_kind": "GPU"}, "maybe")


def test_ort_reports_device_ids_as_strings_and_we_read_an_int():
    assert ort_device([CUDA, CPU], {CUDA: {"device_id": "1", "arena_extend_strategy": "kNextPowerOfTwo"}}) == ("cuda", 1)
    assert ort_device([CPU], {CPU: {}}) == ("cpu", 0)


def test_a_gpu_instance_that_gets_the_cpu_fails_or_warns_as_configured(tiny_onnx_dir, caplog):
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback cannot be provoked here")
    device = DartDevice("gpu", 0, "fail")
    why = preload_cuda_libraries()
    assert why and "onnxruntime-gpu" in why
    # onnxruntime accepts the CUDA request and quietly runs on the CPU: that is what must not pass.
    decoder = OnnxDecoder(tiny_onnx_dir / "model.onnx", device.providers())
    assert decoder.providers == [CPU] and decoder.device == ("cpu", 0)
    with pytest.raises(SotaiError) as err:
        check_providers(decoder.providers, device, why)
    assert "GPU 0" in str(err.value) and "cpu_fallback" in str(err.value) and "onnxruntime-gpu" in str(err.value)
    with caplog.at_level(logging.WARNING):
        line = check_providers(decoder.providers, DartDevice("gpu", 0, "warn"), why)
    assert line.startswith("WARNING") and "CPUExecutionProvider" in caplog.text
    assert check_providers([CUDA, CPU], device) == f"dart: onnxruntime providers in use {[CUDA, CPU]} (instance: gpu 0)"
    assert "WARNING" not in check_providers([CPU], DartDevice("cpu"))
