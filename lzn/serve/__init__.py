"""``lzn serve``: a JSON API and an explorer page over an exported model (README, "lzn serve").

The operations (``ModelService`` in ``service.py``, one function per endpoint in ``endpoints.py``) need only
torch; the HTTP app (``lzn.serve.app``: ``create_app``, ``bind``, ``serve``) needs the ``serve`` extra
(starlette, uvicorn) and says so in one line when it is missing."""

from lzn.serve.requests import Limits, RequestError
from lzn.serve.service import Gallery, ModelService, Settings

__all__ = ["Gallery", "Limits", "ModelService", "RequestError", "Settings"]
