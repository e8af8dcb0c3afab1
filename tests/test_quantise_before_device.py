"""The video loader quantises the experts before they reach the device, layer by layer.

There is no GPU here, so the device is the CPU and a ledger stands in for its memory: every module moved
with ``.to(<device>)`` counts as resident from then on, at the size of the tensors it holds at that moment
(a torchao tensor at the size of its quantised parts). Replaying the production order and the old one
(whole pipeline to the device, then quantise) on the tiny model gives each order's peak device bytes.
"""

from __future__ import annotations

import pytest
import torch

from pipelines.video import loading
from pipelines.video.config import VideoModelConfig


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds; a torchao subclass (``Int8Tensor``...) counts its inner tensors."""
    if type(tensor) not in (torch.Tensor, torch.nn.Parameter) and hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def module_bytes(module: torch.nn.Module) -> int:
    seen: dict[int, int] = {}
    for tensor in list(module.parameters()) + list(module.buffers()):
        seen[id(tensor)] = tensor_bytes(tensor)
    return sum(seen.values())


class DeviceLedger:
    """Modules moved to the device, and the largest total their tensors reached while there."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.moved: dict[int, torch.nn.Module] = {}
        self.peak = 0
        self.events: list[str] = []

    def resident(self) -> int:
        seen: dict[int, int] = {}
        for module in self.moved.values():
            for tensor in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
                seen[id(tensor)] = tensor_bytes(tensor)
        return sum(seen.values())

    def on_move(self, module: torch.nn.Module) -> None:
        for sub in module.modules():
            self.moved[id(sub)] = sub
        self.peak = max(self.peak, self.resident())

    def on_quantised(self) -> None:
        self.peak = max(self.peak, self.resident())


@pytest.fixture
def ledger(monkeypatch):
    device = torch.device("cpu")
    book = DeviceLedger(device)
    original_to = torch.nn.Module.to

    def to(module, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        result = original_to(module, *args, **kwargs)
        if isinstance(target, str | torch.device) and torch.device(target) == device:
            book.on_move(module)
        return result

    original_quantize = loading.quantize_module

    def quantize_module(module, name, where):
        book.events.append(f"quantise {type(module).__name__}")
        original_quantize(module, name, where)
        book.on_quantised()

    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.setattr(loading, "quantize_module", quantize_module)
    return book


def _config(path) -> VideoModelConfig:
    return VideoModelConfig(
        path=str(path),
        device="cpu",
        dtype="bfloat16",
        quantize_experts="int8_weight_only",
        quantize_text_encoder="int8_weight_only",
    )


def _pipeline(path):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline.from_pretrained(path, dtype=torch.bfloat16)


def linear_weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of the linear layers' weights: what quantisation shrinks (int8 values plus one scale per row)."""
    return sum(tensor_bytes(m.weight) for m in module.modules() if isinstance(m, torch.nn.Linear))


def test_experts_are_quantised_before_the_pipeline_moves_to_the_device(tiny_wan_path, ledger, monkeypatch):
    pipe = _pipeline(tiny_wan_path)
    full_precision = {name: linear_weight_bytes(getattr(pipe, name)) for name in ("transformer", "transformer_2")}
    largest_linear = max(
        module_bytes(m)
        for e in (pipe.transformer, pipe.transformer_2)
        for m in e.modules()
        if type(m) is torch.nn.Linear
    )
    original_pipe_to = type(pipe).to
    monkeypatch.setattr(
        type(pipe),
        "to",
        lambda self, *a, **k: (ledger.events.append("pipeline to device"), original_pipe_to(self, *a, **k))[1],
    )

    loading.configure_pipeline(pipe, _config(tiny_wan_path), torch.device("cpu"))

    assert ledger.events == [
        "quantise WanTransformer3DModel",
        "quantise WanTransformer3DModel",
        "quantise UMT5EncoderModel",
        "pipeline to device",
    ]
    for expert in (pipe.transformer, pipe.transformer_2):
        linears = [m for m in expert.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(type(m.weight).__name__ == "Int8Tensor" for m in linears)
    for name, size in full_precision.items():
        quantised = linear_weight_bytes(getattr(pipe, name))
        assert quantised < 0.6 * size, f"{name}: int8 weights should be about half of bf16 ({quantised} vs {size})"
    # The device peak: everything as it ends up (quantised), plus at most one full-precision linear in flight.
    final = module_bytes(pipe.transformer) + module_bytes(pipe.transformer_2) + module_bytes(pipe.text_encoder)
    final += module_bytes(pipe.vae)
    assert ledger.peak <= final + largest_linear, (ledger.peak, final, largest_linear)


def test_the_old_order_peaks_at_the_full_precision_size(tiny_wan_path, ledger):
    """The reference: the pipeline moved first, quantised on the device, as the loader used to do."""
    from torchao.quantization import quantize_

    pipe = _pipeline(tiny_wan_path)
    full_precision = sum(
        module_bytes(getattr(pipe, n)) for n in ("transformer", "transformer_2", "text_encoder", "vae")
    )
    pipe.to(torch.device("cpu"))
    for module in (pipe.transformer, pipe.transformer_2, pipe.text_encoder):
        quantize_(module, loading.torchao_config("int8_weight_only", torch.device("cpu")))
        ledger.on_quantised()
    assert ledger.peak >= full_precision

    # What the new order saves on this model, for BENCHMARKS.md ("Quantise before the GPU").
    fresh = _pipeline(tiny_wan_path)
    fresh_ledger = DeviceLedger(torch.device("cpu"))
    ledger.__dict__.update(fresh_ledger.__dict__)
    loading.configure_pipeline(fresh, _config(tiny_wan_path), torch.device("cpu"))
    print(f"tiny model: host bf16 {full_precision} B; device peak old order {full_precision} B, new {ledger.peak} B")
    assert ledger.peak < full_precision
