"""VividFlow: the Python client (``vividflow.client``) and the command line (``vividflow.cli``) of VividFlow Serve.

Both use only the service's public HTTP API, so they install and run without torch, Ray or the models.
"""

from vividflow.client import ApiError, AsyncClient, Client, Job, RetryPolicy
from vividflow.version import __version__

__all__ = ["ApiError", "AsyncClient", "Client", "Job", "RetryPolicy", "__version__"]
