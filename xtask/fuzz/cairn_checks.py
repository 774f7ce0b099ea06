"""Checks `cargo xtask fuzz-api` adds to schemathesis: every error answer is in the
contract's error shape, `{"error": {"code", "message", "request_id", ...}}`, as JSON."""

import json

import schemathesis


@schemathesis.check
def error_shape(ctx, response, case):
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered as {content_type!r}, not JSON"
    )
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"no `error` object in {body!r}"
    for field in ("code", "message", "request_id"):
        assert isinstance(error.get(field), str) and error[field], (
            f"the error has no `{field}`: {body!r}"
        )
    return None


@schemathesis.serializer("application/wasm")
def wasm_bytes(ctx, value):
    """Plugin uploads: whatever was generated, as bytes (a broken component)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value).encode()


@schemathesis.serializer("application/x-ndjson")
def ndjson_lines(ctx, value):
    """Imports: a generated string as it is, anything else as one JSON line."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return (json.dumps(value) + "\n").encode()
