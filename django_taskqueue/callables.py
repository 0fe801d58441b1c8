"""Python calls as task payloads: an import path and JSON, or pickle, always signed.

A payload is ``djtq1:<kind>:<signature>:<body>``. The signature is an HMAC-SHA256 of the kind and
the body under the queue's signing key (`taskqueue_settings.signing_key()`), so a row written by
anyone without the key is refused before its body is read: never imported from, never unpickled.
Kinds:

``json``    ``{"callable": "package.module.qualname", "args": [...], "kwargs": {...}}`` — for a
            callable reachable by its import path (module-level function, class, builtin,
            class method, static method) whose arguments are plain JSON.
``pickle``  ``pickle.dumps((callable, args, kwargs))`` — everything else App Engine's `deferred`
            accepts (bound methods of instances, callable instances, non-JSON arguments), unless
            `TASKQUEUE["ALLOW_PICKLE"]` is False.
``task``    a call of Django's Tasks framework (`django_taskqueue.backends`), JSON only.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import json
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from .conf import taskqueue_settings
from .exceptions import InvalidTaskError

_MAGIC = b"djtq1"
_SALT = "django_taskqueue.callables"
KINDS = (b"json", b"pickle", b"task")


class InvalidCallableError(InvalidTaskError, ValueError, AttributeError):
    """The callable or its arguments cannot be run by a worker.

    Also an AttributeError: what App Engine's `defer` raises (from pickle) on Python 3 for a
    lambda or a nested function, so code and tests that catch it keep working.
    """


class PayloadError(Exception):
    """The payload is not a valid signed call; it must not be run."""


# -- signing ---------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _hmac_key(key: str) -> bytes:
    # Django's `salted_hmac(_SALT, ..., secret=key, algorithm="sha256")` derives this key
    # afresh for every message; a worker verifies every payload with the same one or two.
    return hashlib.sha256((_SALT + key).encode()).digest()


def _signature(kind: bytes, body: bytes, key: str) -> bytes:
    mac = hmac.new(_hmac_key(key), _MAGIC + b":" + kind + b":" + body, hashlib.sha256)
    return mac.hexdigest().encode("ascii")


def sign(kind: bytes, body: bytes) -> bytes:
    """Return the payload that carries `body` of `kind`, signed with the current key."""
    if kind not in KINDS:
        raise ValueError(f"Unknown payload kind {kind!r}")
    signature = _signature(kind, body, taskqueue_settings.signing_key())
    return b":".join((_MAGIC, kind, signature, body))


def verify(payload: bytes | None) -> tuple[bytes, bytes]:
    """Return `(kind, body)` of a signed payload; raise `PayloadError` unless the signature holds.

    The current key and the fallback keys (rotation from SECRET_KEY_FALLBACKS) are accepted.
    """
    if not payload:
        raise PayloadError("The task has no payload")
    parts = bytes(payload).split(b":", 3)
    if len(parts) != 4 or parts[0] != _MAGIC or parts[1] not in KINDS:
        raise PayloadError("The payload is not a signed call")
    _, kind, signature, body = parts
    if not hmac.compare_digest(signature, _signature(kind, body, taskqueue_settings.signing_key())):
        if not any(
            hmac.compare_digest(signature, _signature(kind, body, key))
            for key in taskqueue_settings.signing_fallback_keys()
        ):
            raise PayloadError(
                "The payload's signature does not match: it was not written by the queue"
            )
    return kind, body


# -- callables -------------------------------------------------------------------------------


def import_path(obj: Any) -> str | None:
    """Return the path that imports `obj` itself, or None when it has none (instances, closures)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    try:
        found = resolve(f"{module}:{qualname}")
    except PayloadError:
        return None
    # `==`, not `is`: a class method is a new bound method at each attribute access.
    return f"{module}:{qualname}" if found == obj else None


def resolve(path: str) -> Any:
    """Import `module:qualname` and return the object; raise `PayloadError` when it is not there."""
    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise PayloadError(f"Cannot import {path!r}: {e}") from e
    return found


def check_deferrable(obj: Any) -> None:
    """Raise `InvalidCallableError` for a callable a worker could never find again.

    Lambdas, nested functions and closures, and anything defined in `__main__`, are refused here,
    when the task is added, rather than failing in the worker.
    """
    if not callable(obj):
        raise InvalidCallableError(f"{obj!r} is not callable")
    function = getattr(obj, "__func__", obj)  # a bound method's function
    if not (inspect.isfunction(function) or inspect.isclass(function)):
        function = type(obj) if not inspect.isbuiltin(obj) else obj  # a callable instance
    name = getattr(function, "__name__", "")
    qualname = getattr(function, "__qualname__", "") or ""
    if name == "<lambda>":
        raise InvalidCallableError(
            "A lambda cannot be deferred: the worker cannot import it. Define a module-level "
            "function instead."
        )
    if "<locals>" in qualname:
        raise InvalidCallableError(
            f"{qualname} is defined inside a function (a nested function or closure): the worker "
            "cannot import it. Move it to module level."
        )
    if getattr(function, "__module__", None) == "__main__":
        raise InvalidCallableError(
            f"{qualname} is defined in __main__: the worker cannot import it. Move it to a module."
        )


def is_plain_json(value: Any) -> bool:
    """Return whether `value` survives a JSON round trip unchanged (types included)."""
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(is_plain_json(item) for item in value)
    if type(value) is dict:
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    return False


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def encode_call(obj: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> bytes:
    """Return the signed payload of the call `obj(*args, **kwargs)`.

    JSON when `obj` has an import path and the arguments are plain JSON; pickle otherwise.
    Raises `InvalidCallableError` when the call cannot be serialized, or needs pickle while
    `TASKQUEUE["ALLOW_PICKLE"]` is False.
    """
    check_deferrable(obj)
    args, kwargs = list(args), dict(kwargs)
    path = import_path(obj)
    if path is not None and is_plain_json(args) and is_plain_json(kwargs):
        return sign(b"json", _dumps({"callable": path, "args": args, "kwargs": kwargs}))
    if not taskqueue_settings.ALLOW_PICKLE:
        raise InvalidCallableError(
            f"Deferring {obj!r} with these arguments needs pickle, which TASKQUEUE['ALLOW_PICKLE'] "
            "turns off: pass a module-level function (or class, or builtin) and JSON arguments "
            "(str, int, float, bool, None, lists, dicts with str keys)."
        )
    try:
        body = pickle.dumps((obj, tuple(args), kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise InvalidCallableError(f"Cannot pickle the call of {obj!r}: {e}") from e
    return sign(b"pickle", body)


def decode_call(payload: bytes | None) -> tuple[Callable[..., Any], tuple[Any, ...], dict]:
    """Return `(callable, args, kwargs)` of a payload made by `encode_call`.

    Raises `PayloadError` when the signature does not hold (the body is then never read), the
    payload is pickled while pickle is off, or the callable cannot be found.
    """
    kind, body = verify(payload)
    if kind == b"json":
        try:
            call = json.loads(body)
            obj = resolve(call["callable"])
            return obj, tuple(call["args"]), dict(call["kwargs"])
        except (ValueError, KeyError, TypeError) as e:
            raise PayloadError(f"Malformed call: {e}") from e
    if kind == b"pickle":
        if not taskqueue_settings.ALLOW_PICKLE:
            raise PayloadError("The payload is pickled and TASKQUEUE['ALLOW_PICKLE'] is False")
        try:
            obj, args, kwargs = pickle.loads(body)  # noqa: S301  (signed: written by the queue)
        except Exception as e:
            raise PayloadError(f"Cannot unpickle the call: {e!r}") from e
        return obj, tuple(args), dict(kwargs)
    raise PayloadError(f"A {kind.decode()} payload is not a deferred call")


def encode_json(kind: bytes, value: Any) -> bytes:
    """Return a signed payload of `kind` whose body is `value` as JSON."""
    return sign(kind, _dumps(value))


def decode_json(payload: bytes | None, kind: bytes) -> Any:
    """Return the JSON body of a signed payload of `kind`; raise `PayloadError` otherwise."""
    found, body = verify(payload)
    if found != kind:
        raise PayloadError(f"Expected a {kind.decode()} payload, found {found.decode()}")
    try:
        return json.loads(body)
    except ValueError as e:
        raise PayloadError(f"Malformed payload: {e}") from e
