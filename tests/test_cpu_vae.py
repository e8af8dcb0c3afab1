"""The Wan VAE's CPU convolutions routed through oneDNN: same numbers, the fast kernel."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from pipelines.video.cpu_vae import use_onednn_convolutions


def _vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()


def _conv_ops(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages() if "conv" in event.key}


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_routed_vae_decodes_and_encodes_the_same_with_the_onednn_kernel():
    stock, routed = _vae(), _vae()
    assert use_onednn_convolutions(routed) > 0
    latents = torch.randn(1, 16, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    video = torch.rand(1, 3, 9, 96, 128, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.inference_mode():
        expected = stock.decode(latents).sample
        got = routed.decode(latents).sample
        encoded_expected = stock.encode(video).latent_dist.mean
        encoded_got = routed.encode(video).latent_dist.mean
    assert got.shape == expected.shape == (1, 3, 9, 96, 128)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert torch.allclose(encoded_got, encoded_expected, atol=1e-4)

    with torch.inference_mode():
        stock_ops = _conv_ops(lambda: stock.decode(latents))
        routed_ops = _conv_ops(lambda: routed.decode(latents))
    assert "aten::slow_conv3d_forward" in stock_ops  # the slow path this module exists for
    assert "aten::mkldnn_convolution" in routed_ops


def test_only_float32_vaes_are_routed():
    vae = copy.deepcopy(_vae()).to(torch.bfloat16)
    assert use_onednn_convolutions(vae) == 0
    assert use_onednn_convolutions(None) == 0
