"""Image → video on Wan2.2-I2V: request and resolution plan, loading, the denoise loop, motion templates."""
