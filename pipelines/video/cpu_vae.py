"""The Wan VAE's 3D convolutions on a CPU: oneDNN instead of PyTorch's native im2col kernel.

PyTorch's CPU conv3d picks its native kernel (``aten::slow_conv3d_forward``: im2col plus a matmul) when
batch x channels x frames x height is at most 20,480, because "for some case, native is faster". Every causal
conv of a VAE with few channels falls under that bound (the tiny VAE's full-resolution chunks are
1 x 3 x 6 x 482), and so do the real VAE's ``conv_in`` (3 input channels) and its first-frame chunks. There
the native kernel is 6-15x slower than oneDNN (one 3x3x3 conv over 1 x 3 x 6 x 482 x 834: 434 ms native,
71 ms oneDNN, 27 ms oneDNN with channels-last weights, which spares oneDNN padding 3 channels to a block of 16).

Measured on the tiny model, one thread: 17-frame encode 7.7 s -> 1.7 s, decode 12.0 s -> 3.1 s; 81 frames
37.2 s -> 6.7 s and 61.0 s -> 17.5 s. Same arithmetic up to float rounding (encode within 3e-7; decoded
uint8 frames differ by at most one level in a few pixels per million), and the same seed still gives the
same frames. 1x1x1 convs stay native: they are a plain matmul, and oneDNN is slower there (13 ms vs 153 ms).
Only float32 needs this: PyTorch already sends bf16/fp16 CPU convs to oneDNN.
"""

from __future__ import annotations

import types

import torch


def use_onednn_convolutions(vae) -> int:
    """Route ``vae``'s float32 causal 3D convs with a kernel larger than 1 through oneDNN; returns how many."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    if vae is None or vae.dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return 0
    routed = 0
    for module in vae.modules():
        if isinstance(module, WanCausalConv3d) and module.kernel_size != (1, 1, 1):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
            # Conv3d.forward calls _conv_forward(input, weight, bias); WanCausalConv3d pads first and then
            # calls Conv3d.forward, so replacing it on the instance keeps diffusers' causal caching intact.
            module._conv_forward = types.MethodType(_onednn_conv3d, module)
            routed += 1
    return routed


def _onednn_conv3d(conv: torch.nn.Conv3d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    if not torch.backends.mkldnn.enabled or x.device.type != "cpu":  # switched off later, or moved off the CPU
        return torch.nn.Conv3d._conv_forward(conv, x, weight, bias)
    return torch.mkldnn_convolution(x, weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups)
