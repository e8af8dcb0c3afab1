"""Background replacement: segmentation, image analysis, SDXL backgrounds, mask controls and compositing."""
