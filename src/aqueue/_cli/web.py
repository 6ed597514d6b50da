"""``web``: serve a queue's dashboard and HTTP API (``aqueue.web``) with uvicorn.

Credentials come from the environment (``AQUEUE_WEB_TOKEN``, ``AQUEUE_WEB_USER`` +
``AQUEUE_WEB_PASSWORD``, ``AQUEUE_WEB_READONLY_USER`` + ``AQUEUE_WEB_READONLY_PASSWORD``),
never from the command line, where ``ps`` would show them. Without any, the server
refuses to start unless ``--no-auth`` is given and it listens on loopback only."""

from __future__ import annotations

import ipaddress
import logging
import os

import click

from .common import fail, load_queue


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without credentials (refused unless --host is a loopback address).",
)
@click.option("--root-path", default="", help="URL prefix when behind a proxy (e.g. /aqueue).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, the server's access and error lines included.",
)
def web(
    app: str, host: str, port: int, no_auth: bool, root_path: str, log_level: str, log_format: str
) -> None:
    """Serve the dashboard and the HTTP API of APP's queue (module:attribute)."""
    try:
        import uvicorn

        import aqueue.web as aqueue_web
    except ImportError as exc:
        fail(f"the web dashboard needs its extra: pip install 'aqueue[web]' ({exc})")
    try:
        auth = aqueue_web.env_auth()
    except ValueError as exc:  # a token too short
        fail(str(exc))
    if no_auth:
        if not is_loopback(host):
            fail(f"--no-auth serves on loopback only, not on {host!r}: set credentials instead")
        auth = aqueue_web.allow_all
    elif auth is None:
        fail(
            "no credentials: set AQUEUE_WEB_TOKEN (16+ characters) or AQUEUE_WEB_USER and "
            "AQUEUE_WEB_PASSWORD, or use --no-auth on a loopback address"
        )
    json_logs = log_format == "json"
    if json_logs:
        from .._logjson import json_logging

        json_logging(log_level)
    queue = load_queue(app)
    asgi = aqueue_web.app(queue, auth=auth, secret=os.environ.get("AQUEUE_WEB_SECRET"))
    where = f"http://{host}:{port}{root_path}/"
    if json_logs:
        logging.getLogger("aqueue.web").info(
            "aqueue web: queue %s on %s", queue.name, where, extra={"queue": queue.name}
        )
    else:
        click.echo(f"aqueue web: queue {queue.name} on {where}", err=True)
    uvicorn.run(
        asgi,
        host=host,
        port=port,
        root_path=root_path,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
        # json: the loggers configured above (uvicorn's own configuration would put its
        # text formatters back)
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,
    )
