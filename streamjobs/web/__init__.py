"""The web dashboard: `create_app(...)` gives an ASGI app to serve or mount.

Needs the `web` extra (`pip install 'streamjobs[web]'`: Starlette, Jinja2, uvicorn).
"""

from __future__ import annotations

from ._app import Dashboard, create_app

__all__ = ["Dashboard", "create_app"]
