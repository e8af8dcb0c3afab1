"""The cancel check inside the VAE decode: honoured between latent frames, and free when nobody cancels."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan

from pipelines.common.errors import JobCancelledError
from pipelines.video.decode_checks import cancellable_decode


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1], num_res_blocks=0, temperal_downsample=[True]).eval()


def test_decoding_is_unchanged_and_checked_once_per_latent_frame(vae):
    latents = torch.randn(1, 4, 3, 8, 8)
    with torch.no_grad():
        plain = vae.decode(latents, return_dict=False)[0]
        asked = []
        with cancellable_decode(vae, asked.append):
            checked = vae.decode(latents, return_dict=False)[0]
    assert torch.equal(plain, checked)
    assert len(asked) == latents.shape[2]
    with torch.no_grad():  # the hook is gone afterwards
        vae.decode(latents, return_dict=False)
    assert len(asked) == latents.shape[2]


def test_a_cancel_stops_the_decode_between_frames(vae):
    latents = torch.randn(1, 4, 4, 8, 8)
    calls = []

    def cancel_on_third(where: str) -> None:
        calls.append(where)
        if len(calls) == 3:
            raise JobCancelledError(f"cancelled {where}")

    with (
        torch.no_grad(),
        pytest.raises(JobCancelledError, match="latent frame 3"),
        cancellable_decode(vae, cancel_on_third),
    ):
        vae.decode(latents, return_dict=False)
    assert len(calls) == 3
