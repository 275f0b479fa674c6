"""The one device rule (cirbench.devices) and the version shims (cirbench.compat)."""

from __future__ import annotations

import warnings

import pytest
import torch

from cirbench import compat
from cirbench.errors import DataError
from cirbench.devices import DEVICE_ENV, resolve_device, resolve_precision


def test_auto_is_the_environment_then_cuda_when_available(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu"
    monkeypatch.delenv(DEVICE_ENV)
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on CPU-only machines")
def test_cuda_without_a_gpu_and_bad_names_are_one_clear_error():
    with pytest.raises(DataError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(DataError, match="not a device name"):
        resolve_device("gpu0")


@pytest.mark.parametrize("name, problem", [
    ("tpu", "not a device name"), ("meta", "cirbench runs on auto, cpu, cuda"), ("xla", "not a device name|cirbench runs on"),
    ("cuda:9", "CUDA is not available|this machine has"),
])
def test_devices_this_machine_or_cirbench_lacks_are_refused(name, problem):
    with pytest.raises(DataError, match=problem):
        resolve_device(name)


@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="checks the refusal off a Mac")
def test_mps_off_a_mac_is_refused(monkeypatch):
    with pytest.raises(DataError, match="MPS is not available on this machine"):
        resolve_device("mps")
    monkeypatch.setenv(DEVICE_ENV, "mps")  # the environment goes through the same check
    with pytest.raises(DataError, match="MPS is not available"):
        resolve_device("auto")


def test_precision_auto_is_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_precision("auto", "cuda:1") == "bf16" and resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(DataError, match="--precision"):
        resolve_precision("fp16", "cpu")


def test_release_numbers_parse_dev_and_local_versions():
    assert compat._release("5.17.0") == (5, 17, 0) and compat._release("4.57.0.dev0") == (4, 57, 0)
    assert compat._release("2.11.0+cu130") == (2, 11, 0)
    assert compat.dtype_kwargs(torch.float32) in ({"dtype": torch.float32}, {"torch_dtype": torch.float32})


def test_checkpointing_shim_switches_it_on_and_off_without_deprecation_warnings():
    from cirbench.backbones.blip2 import tiny_blip2_backbone

    blip = tiny_blip2_backbone(0).blip

    def checkpointing() -> bool:  # the property's name moved too (is_activation_checkpointing in 5.23)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(getattr(blip, "is_activation_checkpointing", None) or blip.is_gradient_checkpointing)

    for enable in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            if enable:
                compat.enable_activation_checkpointing(blip, {"use_reentrant": False})
            else:
                compat.disable_activation_checkpointing(blip)
        assert checkpointing() is enable


def test_no_init_weights_is_a_context_and_attention_is_reported():
    from cirbench.backbones.blip2 import tiny_blip2_backbone

    with compat.no_init_weights():
        pass
    found = compat.attention_implementations(tiny_blip2_backbone(0).blip)
    assert set(found) == {"vision_model", "qformer"} and set(found.values()) <= {"sdpa", "eager", "flash_attention_2", "flex_attention"}
