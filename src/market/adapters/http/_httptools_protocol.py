"""The httptools protocol with the malformed-request problem (protocols.py), in a module of its own: importing
it fails where httptools is missing, and protocols.py then serves h11."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .protocols import _MalformedRequestProblem


class MarketHttpToolsProtocol(_MalformedRequestProblem, HttpToolsProtocol):
    """httptools (the production parser) with the malformed-request problem."""
