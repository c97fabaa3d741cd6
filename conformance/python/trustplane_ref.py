#!/usr/bin/env python3
"""Independent reference for TrustPlane transcript-v1 and passport byte conventions.

Written from the TrustPlane contract (SPEC.md sections 1-3), using only the Python 3.11
standard library. The project's tests use it to check the TypeScript
implementation byte for byte, either by importing the functions below or by
driving the JSON-lines CLI (see ``main`` and README.md).

Conventions shared with the TypeScript side (keep them in sync):

* "trim" is exactly Python's ``str.strip()`` with no argument, i.e. it
  removes the characters in ``PY_STRIP_WHITESPACE`` from both ends. This is
  NOT the same set as JavaScript's ``String.prototype.trim`` (Python also
  strips U+001C..U+001F and U+0085; JavaScript also strips U+FEFF).
* Case mapping of method, scheme, authority, header names and
  content_encoding is ASCII-only: only A-Z / a-z change, every other
  character is left untouched. (Python's own ``str.upper``/``str.lower`` are
  Unicode-aware, e.g. "\u00df".upper() == "SS"; we deliberately do not use them.)
* "Byte order" sorting: Python compares ``str`` by code point, which for
  surrogate-free text is the same order as comparing the UTF-8 bytes.
* Input strings must be surrogate-free Unicode; a lone surrogate (possible in
  JSON via "\\ud800") is rejected with ``invalid_unicode``.

Error precedence in ``build_transcript`` (first failing check wins):
invalid_input / invalid_unicode (shape and types) -> invalid_body_b64 ->
invalid_query_percent_encoding / invalid_query_utf8 -> missing_<field> in
line order (method, scheme, authority, path, audience, route_id,
passport_jti, nonce, key_binding) -> missing_issued_at ->
missing_signed_header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from typing import Any

TRANSCRIPT_VERSION = "trustplane-transcript-v1"
QUERY_ALGORITHM = "rfc3986-sort-keys-values"
TIME_BUCKET_SECONDS = 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# The exact set removed by str.strip() with no argument (str.isspace() is True),
# as of Python 3.11 / Unicode 14.0. test_trustplane_ref.py re-derives it from
# the running interpreter so a drift is noticed.
PY_STRIP_WHITESPACE = frozenset(
    "\u0009\u000a\u000b\u000c\u000d"  # TAB LF VT FF CR
    "\u001c\u001d\u001e\u001f"  # FS GS RS US (not stripped by JS trim)
    "\u0020\u0085\u00a0\u1680"  # SPACE NEL NBSP OGHAM-SPACE (NEL: not JS)
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# RFC 3986 "unreserved" characters: the only bytes left unescaped (SPEC §1).
_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX_DIGITS = "0123456789ABCDEFabcdef"  # ASCII only; int(x, 16) is too lenient

_ASCII_UPPER = str.maketrans(
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_ASCII_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)


class RefError(ValueError):
    """A rejected input; ``code`` is the stable snake_case error string."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def ascii_upper(value: str) -> str:
    """Upper-case A-Z only (see module docstring)."""
    return value.translate(_ASCII_UPPER)


def ascii_lower(value: str) -> str:
    """Lower-case A-Z only (see module docstring)."""
    return value.translate(_ASCII_LOWER)


def trim(value: str) -> str:
    """SPEC "trim": exactly ``str.strip()`` with no argument."""
    return value.strip()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64url(data: bytes) -> str:
    """base64url without padding (SPEC §2/§3)."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _check_unicode(value: str) -> str:
    # A lone surrogate cannot be encoded as UTF-8; refuse it up front so the
    # error does not depend on which field happens to be encoded first.
    for ch in value:
        if "\ud800" <= ch <= "\udfff":
            raise RefError("invalid_unicode")
    return value


def _text(inp: dict, key: str, default: str = "") -> str:
    """Fetch an optional string field; absent or null means ``default``."""
    value = inp.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise RefError("invalid_input")
    return _check_unicode(value)


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python; it is not an integer here.
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# query normalization (SPEC §1, "rfc3986-sort-keys-values")
# ---------------------------------------------------------------------------


def _percent_decode(component: str) -> bytes:
    """Strict percent-decoding of one key or value to raw bytes.

    Every '%' must be followed by exactly two ASCII hex digits, otherwise the
    query is rejected (``a=%zz``, ``a=%4`` and a trailing ``%`` all fail).
    '+' is NOT a space here: it is ordinary data and stays '+'. Characters
    that are not escaped contribute their own UTF-8 bytes.
    """
    out = bytearray()
    i = 0
    n = len(component)
    while i < n:
        ch = component[i]
        if ch == "%":
            hex2 = component[i + 1 : i + 3]
            if len(hex2) != 2 or hex2[0] not in _HEX_DIGITS or hex2[1] not in _HEX_DIGITS:
                raise RefError("invalid_query_percent_encoding")
            out.append(int(hex2, 16))
            i += 3
        else:
            out += ch.encode("utf-8")
            i += 1
    return bytes(out)


def _reencode(raw: bytes) -> str:
    """Validate UTF-8, then escape every byte outside the unreserved set.

    The decoded bytes must be well-formed UTF-8 (Python's strict decoder also
    refuses overlong forms and encoded surrogates, like WHATWG's fatal
    TextDecoder). Decoding and re-encoding valid UTF-8 is the identity, so
    the original bytes are escaped directly, as %XX with upper-case hex.
    """
    try:
        raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise RefError("invalid_query_utf8") from None
    return "".join(chr(b) if b in _UNRESERVED else "%{:02X}".format(b) for b in raw)


def normalize_query(raw: str) -> str:
    """Normalize a raw query string per SPEC §1.

    trim -> drop ONE leading '?' -> empty stays empty -> split on '&' only
    (';' is data; empty segments are kept and become "=") -> split each
    segment at its first '=' (no '=' means an empty value) -> strict
    percent-decode + UTF-8 check -> re-encode -> stable sort by
    (encoded key, encoded value, original index) -> join "k=v" with '&'.
    """
    if not isinstance(raw, str):
        raise RefError("invalid_input")
    query = trim(_check_unicode(raw))
    if query.startswith("?"):
        query = query[1:]  # exactly one; "??a" keeps the second '?' as data
    if query == "":
        return ""
    pairs = []
    for index, segment in enumerate(query.split("&")):
        key, _, value = segment.partition("=")
        pairs.append((_reencode(_percent_decode(key)), _reencode(_percent_decode(value)), index))
    # Encoded keys/values are pure ASCII, so str order == byte order; the
    # index makes the order total (and hence stable) by construction.
    pairs.sort()
    return "&".join(k + "=" + v for k, v, _ in pairs)


# ---------------------------------------------------------------------------
# transcript-v1 (SPEC §1)
# ---------------------------------------------------------------------------


def canonical_allow_list(names: list) -> list:
    """trim, ASCII lower-case, drop empties, de-duplicate, sort ascending."""
    out = set()
    for name in names:
        if not isinstance(name, str):
            raise RefError("invalid_input")
        name = ascii_lower(trim(_check_unicode(name)))
        if name:
            out.add(name)
    return sorted(out)


def _request_headers(headers: list) -> dict:
    """Map lower-cased header name -> trimmed value; FIRST occurrence wins."""
    by_name: dict = {}
    for header in headers:
        if not isinstance(header, dict):
            raise RefError("invalid_input")
        name, value = header.get("name"), header.get("value")
        if not isinstance(name, str) or not isinstance(value, str):
            raise RefError("invalid_input")
        name = ascii_lower(trim(_check_unicode(name)))
        value = trim(_check_unicode(value))
        if name and name not in by_name:
            by_name[name] = value
    return by_name


def _body_digest(inp: dict) -> str:
    """body_sha256 if given (non-empty after trim), else hash of the body."""
    given = trim(_text(inp, "body_sha256"))
    body_utf8 = inp.get("body_utf8")
    body_b64 = inp.get("body_b64")
    if body_utf8 is not None and body_b64 is not None:
        raise RefError("invalid_input")  # exactly one body representation
    if body_b64 is not None:
        if not isinstance(body_b64, str):
            raise RefError("invalid_input")
        try:
            body = base64.b64decode(body_b64, validate=True)  # standard alphabet, padded
        except (binascii.Error, ValueError):
            raise RefError("invalid_body_b64") from None
    else:
        body = _text(inp, "body_utf8").encode("utf-8")
    return given if given else sha256_hex(body)


def build_transcript(inp: dict) -> dict:
    """Build the 20 canonical transcript-v1 lines and their SHA-256.

    Returns ``{"lines": [...], "sha256": "<lower hex>"}``; raises RefError.
    """
    if not isinstance(inp, dict):
        raise RefError("invalid_input")

    # --- shape / type checks (all before any semantic check) ---
    fields = {
        name: trim(_text(inp, name))
        for name in (
            "method", "scheme", "authority", "path", "audience", "route_id",
            "passport_jti", "nonce", "key_binding",
        )
    }
    raw_query = _text(inp, "raw_query")
    content_encoding = ascii_lower(trim(_text(inp, "content_encoding"))) or "identity"
    headers = inp.get("headers")
    headers = [] if headers is None else headers
    allow = inp.get("allow_list")
    allow = [] if allow is None else allow
    if not isinstance(headers, list) or not isinstance(allow, list):
        raise RefError("invalid_input")
    request_headers = _request_headers(headers)
    allow_list = canonical_allow_list(allow)

    body_digest = _body_digest(inp)
    normalized = normalize_query(raw_query)
    query_digest = sha256_hex(normalized.encode("utf-8"))

    method = ascii_upper(fields["method"])
    scheme = ascii_lower(fields["scheme"])
    # authority: lower-case only, no default-port stripping (SPEC §1 line 4)
    authority = ascii_lower(fields["authority"])
    # path: trimmed only, no decoding / case change / dot-segment removal
    path = fields["path"]

    for name in (
        "method", "scheme", "authority", "path", "audience", "route_id",
        "passport_jti", "nonce", "key_binding",
    ):
        if fields[name] == "":
            raise RefError("missing_" + name)
    issued_at = inp.get("issued_at")
    if not _is_int(issued_at) or issued_at <= 0:
        raise RefError("missing_issued_at")

    selected = []
    for name in allow_list:  # allow-list order, i.e. sorted
        if name not in request_headers:
            raise RefError("missing_signed_header")
        selected.append(name + ":" + sha256_hex(request_headers[name].encode("utf-8")))

    lines = [
        "version=" + TRANSCRIPT_VERSION,
        "method=" + method,
        "scheme=" + scheme,
        "authority=" + authority,
        "path=" + path,
        "audience=" + fields["audience"],
        "route_id=" + fields["route_id"],
        "content_encoding=" + content_encoding,
        "query_normalization.algorithm=" + QUERY_ALGORITHM,
        "query_normalization.normalized=" + normalized,
        "query_normalization.sha256=" + query_digest,
        "query_sha256=" + query_digest,  # duplicated on purpose (SPEC §1 line 12)
        "headers.allow_list=" + ",".join(allow_list),
        "headers.selected=" + ",".join(selected),
        "body_sha256=" + body_digest,
        "passport_jti=" + fields["passport_jti"],
        "nonce=" + fields["nonce"],
        "issued_at=" + str(issued_at),
        "time_bucket=" + str(issued_at // TIME_BUCKET_SECONDS),  # floor division
        "key_binding=" + fields["key_binding"],
    ]
    # LF-joined, no trailing newline, no escaping (SPEC §1).
    return {"lines": lines, "sha256": sha256_hex("\n".join(lines).encode("utf-8"))}


# ---------------------------------------------------------------------------
# passport byte conventions of the Python SDK (SPEC §3)
# ---------------------------------------------------------------------------


def _json_segment(value: Any) -> str:
    # Compact separators, non-ASCII kept as raw UTF-8, key order as given.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogate in a key or value
        raise RefError("invalid_unicode") from None
    return b64url(data)


def passport_signing_input(header: dict, claims: dict) -> str:
    """``b64url(header JSON) + "." + b64url(claims JSON)``: the bytes signed."""
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise RefError("invalid_input")
    return _json_segment(header) + "." + _json_segment(claims)


def software_passport_parts(
    issuer: str,
    subject: str,
    audience: str,
    trust_domain: str,
    key_id: str,
    public_key_b64url: str,
    iat: int,
    ttl_seconds: int,
    jti: str,
) -> tuple:
    """Header and claims of a self-issued software passport, SDK key order.

    Mirrors the SDK's own checks: issuer, subject, audience, trust_domain and
    key id must be non-empty and already canonical (no surrounding
    whitespace); ttl must be positive. The jti is trimmed, as the SDK does;
    unlike the SDK (which would draw a random one), an empty jti is refused
    so that the output stays deterministic.
    """
    for name, value in (
        ("issuer", issuer), ("subject", subject), ("audience", audience),
        ("trust_domain", trust_domain), ("kid", key_id),
        ("public_key_b64url", public_key_b64url), ("jti", jti),
    ):
        if not isinstance(value, str):
            raise RefError("invalid_input")
        _check_unicode(value)
    if not _is_int(iat) or not _is_int(ttl_seconds):
        raise RefError("invalid_input")
    for name, value in (
        ("issuer", issuer), ("subject", subject), ("audience", audience),
        ("trust_domain", trust_domain), ("kid", key_id),
    ):
        if trim(value) == "":
            raise RefError("missing_" + name)
        if value != trim(value):
            raise RefError("non_canonical_" + name)
    if ttl_seconds <= 0:
        raise RefError("invalid_passport_ttl")
    jti = trim(jti)
    if jti == "":
        raise RefError("missing_jti")
    if public_key_b64url == "":
        raise RefError("missing_public_key_b64url")

    header = {"alg": "EdDSA", "kid": key_id, "typ": "JWT"}
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": iat,
        "exp": iat + ttl_seconds,
        "jti": jti,
        "trust_domain": trust_domain,
        "cnf": {
            "kid": public_key_b64url,  # self-issued: cnf.kid is the public key itself
            "public_key_b64url": public_key_b64url,
            "key_binding": "software",
        },
    }
    return header, claims


# ---------------------------------------------------------------------------
# JSON-lines CLI
# ---------------------------------------------------------------------------

_PASSPORT_ARGS = (
    "issuer", "subject", "audience", "trust_domain", "key_id",
    "public_key_b64url", "iat", "ttl_seconds", "jti",
)


def handle(request: Any) -> dict:
    """Answer one decoded request object (never raises)."""
    if not isinstance(request, dict):
        return {"id": None, "ok": False, "error": "invalid_request"}
    rid = request.get("id")
    op = request.get("op")
    try:
        if op == "transcript":
            result = build_transcript(request.get("input"))
        elif op == "normalize_query":
            result = {"normalized": normalize_query(request.get("raw"))}
        elif op == "passport_signing_input":
            result = {"signing_input": passport_signing_input(request.get("header"), request.get("claims"))}
        elif op == "software_passport":
            args = request.get("args")
            if not isinstance(args, dict) or set(args) != set(_PASSPORT_ARGS):
                raise RefError("invalid_input")
            header, claims = software_passport_parts(**args)
            result = {"signing_input": passport_signing_input(header, claims)}
        else:
            raise RefError("unknown_op")
    except RefError as exc:
        return {"id": rid, "ok": False, "error": exc.code}
    out = {"id": rid, "ok": True}
    out.update(result)
    return out


def main() -> int:
    stdin = sys.stdin.buffer
    stdout = sys.stdout
    for raw_line in stdin:
        try:
            request = json.loads(raw_line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            response = {"id": None, "ok": False, "error": "invalid_json"}
        else:
            response = handle(request)
        # ASCII-only JSON output: unambiguous whatever the pipe's encoding.
        stdout.write(json.dumps(response, separators=(",", ":"), ensure_ascii=True) + "\n")
        stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
