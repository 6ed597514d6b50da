"""``aqueue.web``: the operators' dashboard and the HTTP API of a queue, one ASGI app
(Starlette, Jinja2; ``pip install 'aqueue[web]'``)::

    import aqueue.web

    app.mount("/aqueue", aqueue.web.app(queue, auth=aqueue.web.token_auth(TOKEN)))

or on its own: ``python -m aqueue web app:queue`` (credentials from the environment,
see docs/operations.md). Nothing of this package is imported by ``import aqueue``.
"""

from ._app import app
from ._auth import Auth, Role, allow_all, any_of, basic_auth, env_auth, token_auth

__all__ = ["Auth", "Role", "allow_all", "any_of", "app", "basic_auth", "env_auth", "token_auth"]
