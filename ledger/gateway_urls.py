"""Where the service may send a platform's signed requests (pure).

Rule: DOKU's base URL is ``https://host[:port][/prefix]`` with no credentials, query or fragment;
plain ``http`` only to a loopback host (127.0.0.0/8, ::1, ``localhost``) and only when the caller
says a sandbox is allowed (tests, the demo). A platform's API key must not be able to point the
service's signed requests, or its reachability probe, at any other host in clear text. The refund
path is an absolute path of plain characters (``//host/…`` would leave DOKU's host).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
_PATH = re.compile(r"^/(?!/)[A-Za-z0-9._~/-]{0,199}$")
_HOST = re.compile(r"^[a-z0-9.-]{1,253}$")


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def base_url_problem(url: str, *, allow_loopback_http: bool) -> str | None:
    """Why ``url`` may not be DOKU's base URL, or None when it may."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or not c.isprintable() for c in url):
        return "not a URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a URL"
    host = parts.hostname or ""  # lower-cased, an IPv6 literal without its brackets
    if not (_HOST.match(host) or (":" in host and _is_ip(host))) or (port is not None and not 0 < port < 65536):
        return "no host"
    if parts.username is not None or parts.password is not None:
        return "credentials do not belong in the URL"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "no query or fragment"
    if parts.path and not _PATH.match(parts.path):
        return "the path holds characters a DOKU URL does not"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback_host(host):
        return None if allow_loopback_http else "http only to a loopback sandbox, and only when the sandbox is allowed"
    return "must be https"


def refund_path_problem(path: str) -> str | None:
    """Why ``path`` may not be DOKU's refund path, or None when it may."""
    return None if _PATH.match(path) else "an absolute path of A-Z a-z 0-9 . _ ~ / -, not starting with //"
