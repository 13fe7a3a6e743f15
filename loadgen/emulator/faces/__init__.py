"""Protocol faces: one module per provider, each translating its wire protocol
into calls on the provider-neutral core (`loadgen.emulator.core.Core`).

A face is a class built with the core, with a `name` and a
`handle(request) -> bool` method that answers the request (now or later) and
returns True, or returns False when the request is not for this face. Faces
are tried in the order given to the server; add a provider by adding a module
and a line below.
"""

import importlib

FACES = {
    "e2b": "loadgen.emulator.faces.e2b:E2BFace",
    "modal": "loadgen.emulator.faces.modal:ModalFace",
    "codesandbox": "loadgen.emulator.faces.codesandbox:CodeSandboxFace",
    "daytona": "loadgen.emulator.faces.daytona:DaytonaFace",
    "runloop": "loadgen.emulator.faces.runloop:RunloopFace",
}


def load_face(name: str):
    try:
        target = FACES[name]
    except KeyError:
        raise ValueError(f"unknown face {name!r}; available: {', '.join(sorted(FACES))}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def json_object(body: bytes, empty=None):
    """A request body as a JSON object: (object, None), or (None, why it is not one).

    Every face answers a malformed body the way its provider does (its own
    400 shape), but what counts as malformed is the same everywhere.
    """
    import orjson

    if not body:
        if empty is None:
            return None, "request body must be a JSON object"
        return empty, None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return None, f"request body is not valid JSON: {e}"
    if not isinstance(value, dict):
        return None, "request body must be a JSON object"
    return value, None


def refusal(out, noun: str = "sandbox") -> tuple[str, bytes]:
    """What a 429'd create says and its Retry-After header: (which limit, header line).

    Each face words its own body, but the limit named and the header (whole
    seconds until a token, at least 1) are the same everywhere."""
    import math

    from loadgen.emulator import core

    retry = max(1, math.ceil(out.retry_after_s)) if math.isfinite(out.retry_after_s) else 60
    what = f"{noun} creation rate limit" if out.fault == core.F_RATE_LIMITED else f"concurrent {noun} limit"
    return what, b"retry-after: %d\r\n" % retry
