"""The ``vividflow`` command line (Typer + Rich) on top of ``vividflow.client``."""

from vividflow.cli.main import app, main

__all__ = ["app", "main"]
