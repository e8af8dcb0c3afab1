"""``/`` and ``/ui/...``: the browser UI, three static files that talk to the public v1 API only.

The page is plain HTML, CSS and one script with no build step and nothing fetched from elsewhere, so it
works offline and in air-gapped clusters. The routes stay out of the OpenAPI document: they are not part of
the API contract, and client generators and the schema fuzz should not see them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).parent / "static"

# A fixed table rather than a directory mount: only these files can ever be served, so no request path
# can reach anything else on disk.
UI_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The page and its assets change with every release of the server; "no-cache" makes browsers revalidate
# (cheap: FileResponse sends ETag and Last-Modified) so a page never runs with last release's script.
NO_CACHE = {"Cache-Control": "no-cache"}


def web_ui_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)

    @router.get("/ui/{asset}")
    async def asset(asset: str) -> FileResponse:
        media_type = UI_ASSETS.get(asset)
        if media_type is None:
            # answered with the project's error body by deployments.http.errors, like an unknown route
            raise HTTPException(404, detail=f"no UI file {asset!r}; the UI is served at /")
        return FileResponse(STATIC_DIR / asset, media_type=media_type, headers=NO_CACHE)

    return router
