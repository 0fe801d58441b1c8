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

# The bytes that open or close a string or a level of nesting, and the escape character.
_SPECIAL_RE = re.compile(rb'["\\\[\]{}]')
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPENING = (ord("["), ord("{"))


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    default_code = "request_too_large"


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    """Return how deep the arrays and objects of the JSON text `body` nest (0 for a scalar).

    One pass over the brackets, quotes and backslashes only (a regular expression over whole
    strings would backtrack quadratically on a crafted body); brackets inside strings do not
    count. With `stop_above`, returns as soon as the depth exceeds it.
    """
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _SPECIAL_RE.finditer(body):
        at = match.start()
        if at == escaped_at:
            continue
        char = body[at]
        if in_string:
            if char == _BACKSLASH:
                escaped_at = at + 1
            elif char == _QUOTE:
                in_string = False
        elif char == _QUOTE:
            in_string = True
        elif char in _OPENING:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        elif char != _BACKSLASH:
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
        if json_depth(body, stop_above=MAX_DEPTH) > MAX_DEPTH:
            raise ParseError(
                f"JSON parse error - arrays and objects nest deeper than {MAX_DEPTH} levels.",
                code="json_too_deep",
            )
        return super().parse(io.BytesIO(body), media_type, parser_context)
