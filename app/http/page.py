"""The search page at ``/``: HTML, JS and CSS from ``app/http/static``, served as they are.

No build step and nothing from the internet: the Content-Security-Policy lets the page
load only from the worker that served it. The page and its two assets need no API key
(they hold no data); the page asks for the key once and sends it with its API calls.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")
# path → (file in STATIC, content type)
ASSETS = {
    "/": ("index.html", "text/html"),
    "/ui/app.js": ("app.js", "text/javascript"),
    "/ui/style.css": ("style.css", "text/css"),
}
PATHS = frozenset(ASSETS)
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # a worker upgrade shows its page at once
}


def register_page(router: web.UrlDispatcher) -> None:
    """Route the page and its assets; the files are read once, here."""
    for path, (name, content_type) in ASSETS.items():
        router.add_get(path, partial(_serve, (STATIC / name).read_bytes(), content_type))


async def _serve(body: bytes, content_type: str, request: web.Request) -> web.Response:
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)
