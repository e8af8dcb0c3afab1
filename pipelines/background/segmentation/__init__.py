"""The subject matte: BiRefNet → U2Net (ONNX) → classic → ellipse, each stage checked before it is kept."""
