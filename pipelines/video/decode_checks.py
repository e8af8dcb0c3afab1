"""Cancel checks inside the VAE decode, the longest single stage a render has.

Wan's VAE decodes one latent frame at a time (its causal decoder keeps a cache between them), so a cancel
can be honoured between latent frames instead of only after the whole clip. A forward pre-hook on the
decoder runs the check before each frame; it never changes what is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


@contextmanager
def cancellable_decode(vae: torch.nn.Module, check: Callable[[str], None] | None) -> Iterator[None]:
    """While inside, each call of ``vae.decoder`` first runs ``check(where)``, which raises to cancel (the
    pipeline's own cancel check: it raises ``JobCancelledError``)."""
    decoder = getattr(vae, "decoder", None)
    if check is None or decoder is None:
        yield
        return
    frames = [0]

    def before_frame(_module, _inputs):
        frames[0] += 1
        check(f"while decoding, before latent frame {frames[0]}")

    handle = decoder.register_forward_pre_hook(before_frame)
    try:
        yield
    finally:
        handle.remove()
