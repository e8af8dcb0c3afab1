"""Model pipelines: torch, diffusers and media code with no Ray and no HTTP.

Import the submodules directly; this package imports nothing heavy so the HTTP layer can use the
light helpers (image decoding, the resolution plan) without loading torch.
"""
