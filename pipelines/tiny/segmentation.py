"""Tiny stand-ins for the segmentation checkpoints, as ONNX files in the production layout.

``build_tiny_u2net`` writes ``u2net.onnx`` with the interface of rembg's U2Net file (input ``input.1``
1x3x320x320; seven 1x1x320x320 saliency maps after a sigmoid, the fused map first, named ``1959`` to
``1965``). ``build_tiny_birefnet`` writes ``birefnet.onnx`` with the interface of the published BiRefNet
exports (input ``input_image`` 1x3x1024x1024 in ImageNet normalisation, output ``output_image``: logits
whose sigmoid is the mask). ``pipelines.background.segmentation.chain`` loads both exactly as it loads the real files.

Each net is a small image-dependent head plus a learned low-resolution bias map upsampled to the
output size. With random weights the bias map dominates and the output is smooth noise, which the
chain's acceptance test must reject. ``blob=True`` (tests only) zeroes the head and sets the bias map
to a centred ellipse, so the output is the same confident subject mask for every input: a stage that
can be shown to be accepted. Builds are seeded and exported with the TorchScript exporter, which
writes byte-identical files for the same seed. Exporting needs the ``onnx`` package.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pipelines.background.segmentation.chain import BIREFNET_FILE, U2NET_FILE

TINY_U2NET = "tiny-u2net"
TINY_BIREFNET = "tiny-birefnet"

U2NET_SIZE = 320
U2NET_INPUT = "input.1"
U2NET_OUTPUTS = tuple(str(1959 + i) for i in range(7))  # d0 (fused) then the six side outputs
BIREFNET_SIZE = 1024
BIREFNET_INPUT = "input_image"
BIREFNET_OUTPUT = "output_image"

BIAS_GRID = 64  # resolution of the learned bias map: coarse enough to stay a few hundred kB
NOISE_STD = 1.5  # logits of the random bias map: most sigmoid values land between 0.1 and 0.9
BLOB_LOGIT = 8.0  # blob mode: sigmoid(8) > 0.999, a confident subject and background
BLOB_RX, BLOB_RY = 0.3, 0.4  # blob radii as fractions of the side (about 38 % coverage)
OPSET = 17


class TinyMaskNet(nn.Module):
    """Two strided convolutions, a 1x1 head, plus an upsampled bias map; ``maps`` output channels."""

    def __init__(self, size: int, maps: int, sigmoid: bool) -> None:
        super().__init__()
        self.size = size
        self.sigmoid = sigmoid
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Conv2d(8, maps, 1)
        self.bias_map = nn.Parameter(NOISE_STD * torch.randn(1, maps, BIAS_GRID, BIAS_GRID))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        size = (self.size, self.size)
        logits = F.interpolate(self.head(self.encoder(x)), size=size, mode="bilinear", align_corners=False)
        logits = logits + F.interpolate(self.bias_map, size=size, mode="bilinear", align_corners=False)
        maps = torch.sigmoid(logits) if self.sigmoid else logits
        return tuple(maps[:, i : i + 1] for i in range(maps.shape[1]))

    @torch.no_grad()
    def make_blob(self) -> None:
        """Make the output a centred ellipse whatever the input: the head contributes nothing."""
        self.head.weight.zero_()
        self.head.bias.zero_()
        centres = (torch.arange(BIAS_GRID, dtype=torch.float32) + 0.5) / BIAS_GRID - 0.5
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        radius = torch.sqrt((xx / BLOB_RX) ** 2 + (yy / BLOB_RY) ** 2)
        # A steep but finite ramp across the rim, so the upsampled edge is a thin soft band.
        blob = torch.clamp((1.0 - radius) * 10.0, -1.0, 1.0) * BLOB_LOGIT
        self.bias_map.copy_(blob.expand_as(self.bias_map))


def _build(model_fn, seed: int, blob: bool) -> TinyMaskNet:
    # fork_rng: building a stand-in must not shift the global RNG other code (and tests) rely on.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn().eval()
    if blob:
        model.make_blob()
    return model


def _export(model: TinyMaskNet, target: Path, input_name: str, output_names: list[str]) -> None:
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, model.size, model.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        torch.onnx.export(
            model,
            (example,),
            str(target),
            input_names=[input_name],
            output_names=[f"map{i}" for i in range(len(output_names))],
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    # TorchScript refuses numeric value names such as U2Net's "1959", so they are set on the saved graph.
    graph_model = onnx.load(str(target))
    renames = {out.name: name for out, name in zip(graph_model.graph.output, output_names, strict=True)}
    for value in graph_model.graph.output:
        value.name = renames[value.name]
    for node in graph_model.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(target))


def build_tiny_u2net(out_dir: Path, seed: int = 0, *, blob: bool = False) -> Path:
    """Write ``out_dir/u2net.onnx``, a stand-in for rembg's ``u2net.onnx``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    model = _build(lambda: TinyMaskNet(U2NET_SIZE, len(U2NET_OUTPUTS), sigmoid=True), seed, blob)
    _export(model, out_dir / U2NET_FILE, U2NET_INPUT, list(U2NET_OUTPUTS))
    return out_dir


def build_tiny_birefnet(out_dir: Path, seed: int = 0, *, blob: bool = False, size: int = BIREFNET_SIZE) -> Path:
    """Write ``out_dir/birefnet.onnx``, a stand-in for a BiRefNet ONNX export; returns ``out_dir``.

    ``size`` other than 1024 is for experiments only: the loader reads the input size from the graph.
    """
    out_dir = Path(out_dir)
    model = _build(lambda: TinyMaskNet(size, 1, sigmoid=False), seed, blob)
    _export(model, out_dir / BIREFNET_FILE, BIREFNET_INPUT, [BIREFNET_OUTPUT])
    return out_dir
