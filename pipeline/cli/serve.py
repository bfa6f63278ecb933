"""`shoal serve`: the prediction service, the REST API and the web pages on uvicorn."""

from __future__ import annotations

import typer

from catalog.settings import get_settings
from pipeline.cli.common import catalog_session, console
from pipeline.serve.limits import uvicorn_bounds


def serve_cmd(
    host: str = typer.Option(None, "--host", help="Address to bind (SHOAL_SERVE_HOST; default "
                             "127.0.0.1: reads open, writes need SHOAL_API_TOKEN)."),
    port: int = typer.Option(None, "--port", help="Port (SHOAL_SERVE_PORT; default 8000)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve predictions (POST /v1/predict), the REST API (/docs, /openapi.json) and the pages.

    Start as many as you like behind one catalog: they share nothing but the catalog."""
    import uvicorn

    config = get_settings().serve
    with catalog_session():  # a clear error now rather than on the first request
        pass
    host, port = host or config.host, port or config.port
    console.print(f"serving on http://{host}:{port} (API docs at /docs)", highlight=False)
    uvicorn.run("pipeline.serve.app:create_app", factory=True, host=host, port=port,
                log_level=log_level, access_log=False, **uvicorn_bounds(config.timeout))
