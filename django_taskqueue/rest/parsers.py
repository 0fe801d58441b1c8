"""The REST API's JSON parser: DRF's, with limits on the body's size and nesting depth.

A body the API could never accept is refused before it is parsed, with a stable code:

* over `MAX_BODY_BYTES` (2 MiB: a 1 MiB payload in base64 is 1.4 MB, the largest body any
  view takes), 413 `request_too_large`, read no further;
* arrays and objects nested over `MAX_DEPTH` levels deep (no view's input goes past 3),
  400 `json_too_deep`, where Python's parser would otherwise recurse until it fails.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 32

# JSON strings (with their escapes), whose brackets do not nest anything.
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET_RE = re.compile(rb"[\[\]{}]")


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    default_code = "request_too_large"


def json_depth(body: bytes) -> int:
    """Return how deep the arrays and objects of the JSON text `body` nest (0 for a scalar)."""
    depth = deepest = 0
    for match in _BRACKET_RE.finditer(_STRING_RE.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class LimitedJSONParser(JSONParser):
    """JSON, refused past `MAX_BODY_BYTES` (413) or `MAX_DEPTH` levels of nesting (400)."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        body = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(body) > MAX_BODY_BYTES:
            raise RequestTooLarge()
        if json_depth(body) > MAX_DEPTH:
            raise ParseError(
                f"JSON parse error - arrays and objects nest deeper than {MAX_DEPTH} levels.",
                code="json_too_deep",
            )
        return super().parse(io.BytesIO(body), media_type, parser_context)
