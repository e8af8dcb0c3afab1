"""Pieces every task shares: errors, typed-config base, devices, callbacks, text checks, images, MP4, files."""
