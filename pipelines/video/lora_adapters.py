"""Motion LoRAs applied per job, unmerged, beside the experts' (possibly FP8/INT8-quantised) base weights.

Each targeted linear layer gets a forward hook for the job that adds ``scale · B(A(x))`` (plus the LoRA's
bias) to the layer's output, and the hook is removed when the job ends. The base weights are never read,
written, re-quantised or reloaded: the same path works for every ``quantize_experts`` mode, because it only
sees the layer's input and output (why not PEFT's layers: docs/decisions.md, "Motion LoRAs").

A replica keeps up to ``max_adapters`` LoRAs on its device (least recently used evicted first), so switching
to a held LoRA costs registering a few hooks; one that is not held is read, checked and moved first.
Renders are serialised by the pipeline, so the active set is always exactly the current job's.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pipelines.video.config import MotionLoraLibraryConfig
from pipelines.video.lora_files import LoraFileError, check_against_layers
from pipelines.video.lora_library import EXPERT_MODULES, Expert, LoraCatalog, LoraEntry, LoraUnavailableError

log = logging.getLogger(__name__)

LoraChoice = tuple[str, float]  # (library id, strength 0-2)


@dataclass
class LayerAdapter:
    down: torch.Tensor  # (rank, in), the alpha/rank scale folded in
    up: torch.Tensor  # (out, rank)
    bias: torch.Tensor | None  # (out,)


@dataclass
class LoadedLora:
    id: str
    signature: tuple
    layers: dict[Expert, dict[str, LayerAdapter]]
    bytes: int
    load_s: float


@dataclass
class SwitchReport:
    """What setting the last job's adapters cost: for the job's timings and the benchmark."""

    loaded: list[str] = field(default_factory=list)  # read from disk for this job
    reused: list[str] = field(default_factory=list)  # already held
    evicted: list[str] = field(default_factory=list)
    hooks: int = 0
    seconds: float = 0.0


class MotionLoras:
    """The adapters of one pipeline's experts: an LRU of loaded LoRAs and the hooks of the current job."""

    def __init__(self, pipe, config: MotionLoraLibraryConfig, *, dtype: torch.dtype | None = None) -> None:
        self.config = config
        self.experts = {
            expert: getattr(pipe, module)
            for expert, module in EXPERT_MODULES.items()
            if getattr(pipe, module, None) is not None
        }
        self.linears = {
            expert: {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
            for expert, model in self.experts.items()
        }
        self.shapes = {
            expert: {name: (module.out_features, module.in_features) for name, module in layers.items()}
            for expert, layers in self.linears.items()
        }
        first = next(iter(self.experts.values()))
        self.dtype = dtype or first.dtype  # a quantised expert still reports its compute dtype
        self.catalog = LoraCatalog(config, lambda: self.shapes)
        self._held: OrderedDict[str, LoadedLora] = OrderedDict()
        self._broken: dict[tuple, str] = {}  # (id, signature) -> why its tensors could not be used
        self.last_switch = SwitchReport()

    @property
    def device(self) -> torch.device:
        return next(iter(self.experts.values())).device

    def held(self) -> frozenset[str]:
        """The LoRA ids loaded on this replica (what a claim with affinity prefers)."""
        return frozenset(self._held)

    def held_bytes(self) -> int:
        return sum(lora.bytes for lora in self._held.values())

    @contextmanager
    def applied(self, choices: Sequence[LoraChoice]) -> Iterator[SwitchReport]:
        """Hook ``choices`` into the experts for the duration of the block; always unhooked afterwards."""
        started = time.perf_counter()
        report = SwitchReport()
        handles = []
        try:
            for lora, scales in self._prepare(choices, report):
                for expert, layers in lora.layers.items():
                    scale = scales.get(expert, 0.0)
                    if scale == 0.0:  # strength 0 is the base model, bit for bit
                        continue
                    for name, adapter in layers.items():
                        handles.append(self.linears[expert][name].register_forward_hook(_adds(adapter, scale)))
            report.hooks = len(handles)
            report.seconds = time.perf_counter() - started
            self.last_switch = report
            yield report
        finally:
            for handle in handles:
                handle.remove()

    def _prepare(self, choices: Sequence[LoraChoice], report: SwitchReport) -> list[tuple[LoadedLora, dict]]:
        if len(choices) > self.config.max_adapters:
            raise LoraUnavailableError(
                f"{len(choices)} LoRAs asked for; this replica holds at most {self.config.max_adapters}", field="lora"
            )
        library = self.catalog.current()
        resolved = [(library.entries.get(lora_id), library.resolve(lora_id, s)) for lora_id, s in choices]
        wanted = {entry.id for entry, _ in resolved}
        prepared = []
        for entry, scales in resolved:
            lora = self._held.get(entry.id)
            if lora is not None and lora.signature == entry.signature:
                self._held.move_to_end(entry.id)
                report.reused.append(entry.id)
            else:
                self._evict(keep=wanted, room_for=1, report=report)
                lora = self._load(entry)
                self._held[entry.id] = lora
                report.loaded.append(entry.id)
            prepared.append((lora, scales))
        return prepared

    def _evict(self, *, keep: set[str], room_for: int, report: SwitchReport) -> None:
        for lora_id in list(self._held):
            if len(self._held) + room_for <= self.config.max_adapters:
                return
            if lora_id not in keep:
                del self._held[lora_id]
                report.evicted.append(lora_id)

    def _load(self, entry: LoraEntry) -> LoadedLora:
        key = (entry.id, entry.signature)
        if key in self._broken:
            raise LoraUnavailableError(f"LoRA {entry.id!r} is unavailable: {self._broken[key]}", field="lora")
        started = time.perf_counter()
        try:
            layers: dict[Expert, dict[str, LayerAdapter]] = {}
            for expert in (expert for expert in entry.files if expert in self.experts):
                # the real modules decide, whatever the header check before saw
                check_against_layers(entry.layouts[expert], self.shapes[expert], expert.replace("_", "-"))
                # one file for both experts: one copy on the device, shared by both experts' hooks
                shared = next((layers[e] for e in layers if entry.files[e] == entry.files[expert]), None)
                layers[expert] = shared if shared is not None else self._read(entry, expert)
        except (LoraFileError, OSError, RuntimeError, ValueError) as exc:
            # a file that changed or rotted after the header check (truncated data, NaNs): this LoRA only
            reason = (
                str(exc) if isinstance(exc, LoraFileError) else f"its tensors cannot be read ({type(exc).__name__})"
            )
            self._broken[key] = reason
            log.warning("LoRA %s cannot be used: %s", entry.id, reason)
            raise LoraUnavailableError(f"LoRA {entry.id!r} is unavailable: {reason}", field="lora") from None
        tensors = {
            id(tensor): tensor
            for adapters in layers.values()
            for adapter in adapters.values()
            for tensor in (adapter.down, adapter.up, adapter.bias)
            if tensor is not None
        }
        size = sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
        lora = LoadedLora(entry.id, entry.signature, layers, size, time.perf_counter() - started)
        log.info("LoRA %s loaded: %.1f KiB in %.3f s", entry.id, size / 1024, lora.load_s)
        return lora

    def _read(self, entry: LoraEntry, expert: Expert) -> dict[str, LayerAdapter]:
        from safetensors import safe_open

        path, layout = entry.files[expert], entry.layouts[expert]
        adapters: dict[str, LayerAdapter] = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for name, module in layout.modules.items():
                down = handle.get_tensor(module.down.key).float()
                up = handle.get_tensor(module.up.key).float()
                bias = handle.get_tensor(module.bias.key).float() if module.bias is not None else None
                scale = layout.scale
                if module.alpha is not None:
                    scale *= float(handle.get_tensor(module.alpha.key).float().reshape(())) / module.rank
                for tensor in (down, up, bias):
                    if tensor is not None and not torch.isfinite(tensor).all():
                        raise LoraFileError(f"{path.name}: {name} holds NaN or infinite values")
                if not math.isfinite(scale):
                    raise LoraFileError(f"{path.name}: {name}'s alpha is not a finite number")
                adapters[name] = LayerAdapter(
                    down=(down * scale).to(self.device, self.dtype),
                    up=up.to(self.device, self.dtype),
                    bias=None if bias is None else bias.to(self.device, self.dtype),
                )
        return adapters


def _adds(adapter: LayerAdapter, scale: float):
    def hook(module, inputs, output):
        x = inputs[0]
        delta = F.linear(F.linear(x.to(adapter.down.dtype), adapter.down), adapter.up, adapter.bias)
        return output + (scale * delta).to(output.dtype)

    return hook
