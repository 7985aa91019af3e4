"""The HTTP side of ``lzn serve``: a small Starlette (ASGI) app over a :class:`ModelService`, and ``serve`` to
run it with uvicorn.

* Every response is JSON (the page at ``/`` aside); every refusal a 4xx JSON body ``{"error": "..."}`` naming
  the problem and the expected form, every failure a 500 of the same form; no request stops the server.
* ``token``: every request carries ``Authorization: Bearer TOKEN`` (the page: ``/?token=TOKEN`` in the address,
  which it sends on as that header); a missing or wrong one gets 401.
* ``hosts``: the ``Host`` names accepted (for a server on 127.0.0.1: localhost names only, so that a web page
  elsewhere cannot reach it through DNS rebinding); None accepts any.
* A POST body is JSON (``Content-Type: application/json``, so that another site's form cannot post to it)
  of at most ``limits.request_bytes``, read in chunks and cut off there. No field names a file: images and
  texts travel in the body, and nothing is written.
* Model calls run in worker threads, one at a time (the service's lock), so ``/health`` answers meanwhile.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import traceback
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

MISSING = "lzn serve needs the `serve` extra (starlette and uvicorn): pip install 'lzn[serve]'"

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import Headers, QueryParams
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as err:  # the `serve` extra
    raise ImportError(MISSING) from err

from lzn.serve import endpoints
from lzn.serve.requests import RequestError, parse_json
from lzn.serve.service import ModelService

log = logging.getLogger("lzn")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
Operation = Callable[[ModelService, dict[str, Any]], dict[str, Any]]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(content, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status, {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **(headers or {})},
                    media_type="application/json")


class Guard:
    """ASGI middleware in front of every route: the ``Host`` header, then the token."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: tuple[str, ...] | None) -> None:
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = None
        if self.hosts is not None and _host_name(headers.get("host", "")) not in self.hosts:
            refusal = error(400, f"unexpected Host header {headers.get('host', '')!r}: this server answers only "
                                 f"to {', '.join(self.hosts)} (start it with --host to serve other names)")
        elif self.token is not None and not self._authorised(headers, QueryParams(scope.get("query_string", b""))):
            refusal = error(401, "missing or wrong token: send the header 'Authorization: Bearer TOKEN' (the page: "
                                 "open /?token=TOKEN)", {"WWW-Authenticate": "Bearer"})
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorised(self, headers: Headers, query: QueryParams) -> bool:
        assert self.token is not None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":  # else a token in the address (the page's first load)
            given = query.get("token", "")
        return hmac.compare_digest(given.strip().encode("utf-8"), self.token.encode("utf-8"))


def _host_name(host: str) -> str:
    """``127.0.0.1:8000`` -> ``127.0.0.1``, ``[::1]:8000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object of a POST body of at most ``limit`` bytes (413 beyond, before reading it all)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(415, f"send the body as JSON with the header 'Content-Type: application/json', got "
                                f"{kind or 'no Content-Type'}")
    length = request.headers.get("content-length")
    too_big = f"the body is larger than this server's limit of {limit} bytes (lzn serve --max-request-bytes)"
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise RequestError(413 if length.isdigit() else 400, too_big if length.isdigit() else "bad Content-Length")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError(413, too_big)
        chunks.append(chunk)
    if not total:
        raise RequestError(400, "the body is empty: send a JSON object")
    return parse_json(b"".join(chunks))


def query_fields(query: QueryParams) -> dict[str, Any]:
    """``GET /zones?label=3&caption=a+fat+zero&seed=1`` as the fields of ``endpoints.zones``."""
    repeated = {"label": "labels", "caption": "captions"}
    out: dict[str, Any] = {}
    for key in query.keys():
        if key == "token":
            continue
        if key in repeated:
            out[repeated[key]] = query.getlist(key)
        elif key == "seed":
            try:
                out[key] = int(query[key])
            except ValueError:
                raise RequestError(400, f"?seed= must be an integer, got {query[key]!r}") from None
        else:
            raise RequestError(400, f"unknown query parameter {key!r}; expected label, caption or seed")
    return out


def route(service: ModelService, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            data = (await read_json(request, service.limits.request_bytes) if request.method == "POST"
                    else query_fields(request.query_params))
            return json_response(await run_in_threadpool(operation, service, data))
        except RequestError as err:
            return error(err.status, err.message)
        except (ValueError, TypeError) as err:  # the model's own checks of its arguments
            return error(400, " ".join(str(err).split()) or type(err).__name__)
        except Exception as err:  # a failure of the model or the server: logged, and the server goes on
            log.error("%s %s failed: %s", request.method, request.url.path, "".join(traceback.format_exception(err)))
            return error(500, f"internal error ({type(err).__name__}: {' '.join(str(err).split())})")

    return endpoint


def create_app(service: ModelService, *, token: str | None = None,
               hosts: tuple[str, ...] | None = None) -> Starlette:
    """The app of ``service``: the page at ``/`` and the JSON API (see the module docstring)."""
    page = resources.files("lzn.serve").joinpath("page.html").read_text(encoding="utf-8")

    async def home(request: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff",
                                           "Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def info(request: Request) -> Response:
        return json_response(service.info())

    posts = {"/classify": endpoints.classify, "/generate": endpoints.generate, "/embed": endpoints.embed,
             "/retrieve": endpoints.retrieve, "/reconstruct": endpoints.reconstruct}
    routes = [Route("/", home, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/info", info, methods=["GET"]),
              Route("/zones", route(service, endpoints.zones), methods=["GET", "POST"])]
    routes += [Route(path, route(service, fn), methods=["POST"]) for path, fn in posts.items()]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        allowed = exc.headers.get("Allow") if exc.headers else None
        what = {404: f"no endpoint {request.url.path}; the endpoints: GET /, /health, /info, /zones; POST "
                     f"{', '.join(posts)}, /zones",
                405: f"{request.method} is not allowed on {request.url.path}; use {allowed}"}.get(exc.status_code,
                                                                                              str(exc.detail))
        return error(exc.status_code, what, dict(exc.headers or {}))

    async def crash(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, "".join(traceback.format_exception(exc)))
        return error(500, f"internal error ({type(exc).__name__})")

    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token, hosts=hosts)],
                     exception_handlers={HTTPException: http_error, Exception: crash})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a port in use or a host not on this machine raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named, as getaddrinfo gives it: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP;
    # without it every answer on a kept-alive connection after the first waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({err.strerror or err}): pick another --port, or a --host of "
                      "this machine") from None
    sock.listen(128)
    return sock


def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Run ``app`` with uvicorn on a bound socket until Ctrl-C (quiet: no access log, which would show tokens)."""
    try:
        import uvicorn
    except ImportError as err:
        raise ImportError(MISSING) from err
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5, server_header=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has finished the requests in flight and closed; the usual way out
        pass
