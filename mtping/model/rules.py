"""Validation rules for single PingSource field values, each returning why a value is bad.

Every check returns None for a good value or a short reason naming what is expected. The rules
follow Knative's webhook (so a source Knative admits is admitted here) except where Knative
admits a value with which every send then fails; those are refused up front instead.
Pure: no I/O, no clock. (Building an `ssl.SSLContext` to parse CA certificates is in-memory.)
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import ssl
from urllib.parse import urlsplit

# CloudEvents context attributes that mtping sets itself. The Go SDK refuses extensions named
# like them (sdk-go v2 event/eventcontext_v1.go specV1Attributes) and, because Knative's webhook
# lets them through, every send of such a source fails. `data` is reserved by the JSON format.
RESERVED_ATTRIBUTES = frozenset(
    {"id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time"}
    | {"data"}
)
SINK_SCHEMES = frozenset({"http", "https"})
# The apiserver enforces these on every namespaced custom resource; checking them again keeps
# ce-source and the Kn-Namespace header safe when a source did not come from an apiserver.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
PEM_CERTIFICATE_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL
)


def namespace_problem(namespace: str) -> str | None:
    """A Kubernetes namespace name: an RFC 1123 label."""
    if len(namespace) <= 63 and DNS_LABEL.fullmatch(namespace):
        return None
    return "must be a DNS label (at most 63 of a-z, 0-9 and '-', alphanumeric at both ends)"


def object_name_problem(name: str) -> str | None:
    """A custom resource name: an RFC 1123 subdomain."""
    if len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name):
        return None
    return "must be a DNS subdomain (at most 253 of a-z, 0-9, '-' and '.')"


def extension_name_problem(name: str) -> str | None:
    """CloudEvents attribute naming, as Knative admits it: ASCII letters and digits.

    Upper case is admitted (Knative does; the Go SDK lower-cases it, as HTTP header names are
    case-insensitive anyway); the caller lower-cases. The CloudEvents advice to stay within 20
    characters is a SHOULD that Knative does not enforce, so neither does mtping.
    """
    if not name:
        return "extension names must not be empty"
    if not (name.isascii() and name.isalnum()):
        return f"extension name {name!r} must consist of letters a-z and digits 0-9 only"
    if name.lower() in RESERVED_ATTRIBUTES:
        return (
            f"{name.lower()!r} is a CloudEvents context attribute that mtping sets; "
            "an extension cannot override it"
        )
    return None


def attribute_text_problem(text: str) -> str | None:
    """CloudEvents String type: no control characters, noncharacters or lone surrogates."""
    for char in text:
        if problem := _char_problem(ord(char)):
            return f"contains {problem} U+{ord(char):04X}, not allowed in a CloudEvents attribute"
    return None


def _char_problem(point: int) -> str | None:
    if point < 0x20 or 0x7F <= point <= 0x9F:
        return "control character"
    if 0xD800 <= point <= 0xDFFF:
        return "unpaired surrogate"
    if 0xFDD0 <= point <= 0xFDEF or (point & 0xFFFE) == 0xFFFE:
        return "noncharacter"
    return None


def content_type_problem(content_type: str) -> str | None:
    """Sent verbatim as the Content-Type header, so it must be printable ASCII."""
    if content_type.isascii() and content_type.isprintable():
        return None
    return "must be printable ASCII: it is sent as the Content-Type header"


def is_json_media_type(content_type: str) -> bool:
    """application/json or any +json structured syntax suffix (RFC 6839), parameters ignored."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def json_problem(body: bytes) -> str | None:
    """RFC 8259 JSON text in UTF-8; NaN and Infinity, which Python would accept, are not JSON."""
    try:
        _JSON.decode(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "is not valid JSON: not UTF-8"
    except (ValueError, RecursionError) as error:
        return f"is not valid JSON: {error}"
    return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


# One decoder for every check: json.loads with an argument builds a new one per call.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def decode_base64(text: str) -> bytes:
    """Standard base64 with padding, skipping line breaks as Go's StdEncoding does.

    Raises ValueError with a reason when the text is not base64.
    """
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except binascii.Error as error:
        raise ValueError(f"is not valid base64: {error}") from error
    except ValueError as error:
        raise ValueError("is not valid base64: only ASCII characters are allowed") from error


@functools.lru_cache(maxsize=4096)
def sink_uri_problem(uri: str, *, with_ref: bool) -> str | None:
    """Knative's Destination rule: a ref takes a relative uri, no ref needs an absolute URL."""
    if any(char.isspace() or not char.isprintable() for char in uri):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(uri)
        _ = parts.port  # parses the port, raising ValueError if it is not a number in range
    except ValueError as error:
        return f"is not a valid URI: {error}"
    if with_ref:
        return _relative_uri_problem(parts.scheme)
    return _absolute_url_problem(parts.scheme, parts.hostname)


def _relative_uri_problem(scheme: str) -> str | None:
    if not scheme:
        return None
    return (
        "must be a relative URI when spec.sink.ref is set (it is resolved against the ref's "
        "URL); set either ref or an absolute uri"
    )


def _absolute_url_problem(scheme: str, host: str | None) -> str | None:
    if not scheme:
        return "must be an absolute URL (a relative URI needs spec.sink.ref to resolve against)"
    if scheme.lower() not in SINK_SCHEMES:
        return f"scheme must be http or https, got {scheme!r}"
    if not host:
        return "must include a host"
    return None


def ca_certs_problem(pem: str) -> str | None:
    """PEM CA certificates, each parsed by the same OpenSSL that will later trust it.

    Text between the blocks (bundles carry comments, often non-ASCII) is ignored.
    """
    blocks = PEM_CERTIFICATE_BLOCK.findall(pem)
    if not blocks:
        return "must hold PEM certificates (-----BEGIN CERTIFICATE----- ... -----END ... blocks)"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for number, block in enumerate(blocks, 1):
        if not _loads_certificate(context, block):
            return f"certificate {number} of {len(blocks)} is not a valid PEM certificate"
    return None


def _loads_certificate(context: ssl.SSLContext, block: str) -> bool:
    if not block.isascii():  # a str cadata must be ASCII; bytes would be read as DER
        return False
    try:
        context.load_verify_locations(cadata=block)
    except (ssl.SSLError, ValueError):
        return False
    return True
