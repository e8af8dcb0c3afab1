"""``python -m pipelines.tiny --out .cache/models`` builds every tiny model the local profile runs on."""

from pipelines.tiny.build import main

main()
