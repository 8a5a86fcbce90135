"""Device/precision choice and batched prediction."""

from __future__ import annotations

import pytest
import torch

from uvtag.errors import DeviceError, UsageError
from uvtag.infer import predict
from uvtag.infer.predict import Predictor, default_batch_size, pick_device, pick_dtype
from uvtag.model.kernels import CpuInfo
from uvtag.model import ModelConfig, build_model

TINY = ModelConfig(input_resolution=16, patch_size=4, width=32, layers=2, heads=4, t_size=4,
                   return_list=(0, 1), n_layers=2, n_dim=32, n_head=4, num_classes=6, mlp_dropout=(0.5, 0.5))


def _model():
    torch.manual_seed(0)
    model = build_model(TINY)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_auto_device_is_cpu_without_cuda():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        pick_device("cuda")


def test_unknown_device_is_a_clear_error():
    with pytest.raises(DeviceError, match="unknown device"):
        pick_device("tpu9")


NATIVE_BF16 = CpuInfo("Intel Xeon", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
AVX2_ONLY = CpuInfo("AMD EPYC", frozenset({"avx2", "fma"}))
CAPPED = CpuInfo("Intel Xeon", NATIVE_BF16.flags, (("ONEDNN_MAX_CPU_ISA", "AVX2"),))


def test_precisions(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(predict, "cpu_info", lambda: NATIVE_BF16)
    assert pick_dtype(cpu, "auto") == torch.float32
    assert pick_dtype(cpu, "bf16") == torch.bfloat16
    for other in (AVX2_ONLY, CAPPED):  # no native bf16: refused in one line, unless emulation is asked for
        monkeypatch.setattr(predict, "cpu_info", lambda other=other: other)
        assert pick_dtype(cpu, "auto") == torch.float32
        with pytest.raises(UsageError, match="no native bfloat16") as e:
            pick_dtype(cpu, "bf16")
        assert "\n" not in str(e.value) and other.name in str(e.value)
        assert pick_dtype(cpu, "bf16", emulated_bf16=True) == torch.bfloat16
    with pytest.raises(UsageError, match="70x slower"):
        pick_dtype(cpu, "fp16")
    with pytest.raises(UsageError, match="unknown precision"):
        pick_dtype(cpu, "int4")


def test_batching_does_not_change_logits():
    model = _model()
    clips = torch.randn(5, 3, 4, 16, 16)
    with torch.inference_mode():
        reference = model(clips)
    got = Predictor(model, torch.device("cpu"), batch_size=2).logits(clips)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def test_stream_keeps_keys_in_order_across_batches():
    model = _model()
    clips = [(f"clip{i}", torch.randn(3, 4, 16, 16)) for i in range(5)]
    out = list(Predictor(model, torch.device("cpu"), batch_size=2).stream(iter(clips)))
    assert [k for k, _ in out] == [k for k, _ in clips]
    with torch.inference_mode():
        expected = model(torch.stack([c for _, c in clips]))
    torch.testing.assert_close(torch.stack([v for _, v in out]), expected, rtol=1e-5, atol=1e-5)


def test_bf16_predictor_keeps_top1():
    model = _model()
    clips = torch.randn(4, 3, 4, 16, 16)
    fp32 = Predictor(model, torch.device("cpu")).logits(clips)
    bf16 = Predictor(model, torch.device("cpu"), dtype=torch.bfloat16).logits(clips)
    assert bf16.dtype == torch.float32
    assert torch.equal(fp32.argmax(1), bf16.argmax(1))


def test_default_batch_size_is_larger_for_small_models_on_the_cpu():
    import uvtag

    b16 = build_model(ModelConfig(num_classes=5))
    assert default_batch_size(b16, torch.device("cpu")) == 2  # B/16-sized: 2 per pass
    assert default_batch_size(b16, torch.device("cuda")) == 8
    assert uvtag.load("motion-tiny", device="cpu").predictor.batch_size == 16  # through the real loader
    assert uvtag.load("motion-tiny", device="cpu", batch_size=3).predictor.batch_size == 3
