"""``python -m vividflow``: the CLI, for environments where the ``vividflow`` script is not on PATH."""

from vividflow.cli import main

main()
