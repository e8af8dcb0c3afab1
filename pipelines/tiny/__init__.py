"""Tiny random-weight models with the production architectures (tests, the embedded default).

No production module imports this package (an import-linter contract says so): the serving layer calls
``pipelines.tiny.provision`` before a loader reads a config that names a tiny model.
"""
