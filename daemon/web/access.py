"""Who may use the web timeline, decided before any route runs (pure: no I/O).

- Every request needs the token: the session cookie (set by opening a one-time login
  link, HttpOnly, SameSite=Strict) or `Authorization: Bearer <control token>` (scripts).
  Without it: 401 and nothing else.
- The Host header must name the loopback (127.0.0.1, ::1, localhost, with the port):
  a page on another name that resolves here (DNS rebinding) gets 403.
- A request that changes something (not GET/HEAD) must come from this origin: an Origin
  (or, lacking it, Referer) naming another site gets 403 (no CSRF); SameSite=Strict
  keeps the cookie off cross-site requests besides.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

COOKIE = "bss_web"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_LOGIN_LINKS = 32  # unused one-time links kept at once; older ones expire


@dataclass
class Access:
    """The web's secrets for one run of the daemon."""

    control_token: str  # the data dir's token: `Authorization: Bearer` for scripts
    cookie_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _logins: list[str] = field(default_factory=list)

    def new_login(self) -> str:
        """A one-time login token for a link (`/?token=...`)."""
        token = secrets.token_urlsafe(24)
        self._logins.append(token)
        del self._logins[:-MAX_LOGIN_LINKS]
        return token

    def use_login(self, token: str) -> bool:
        """Whether `token` is an unused login token; it is used up either way."""
        for known in self._logins:
            if hmac.compare_digest(known, token):
                self._logins.remove(known)
                return True
        return False

    def allows(self, cookie: str | None, authorization: str | None) -> bool:
        if cookie is not None and hmac.compare_digest(cookie, self.cookie_secret):
            return True
        if authorization is not None and authorization.startswith("Bearer "):
            return hmac.compare_digest(authorization[7:].strip(), self.control_token)
        return False


def host_is_loopback(host: str | None) -> bool:
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host.startswith("[") and "]:" in host:
        name = host[: host.index("]") + 1]
    return name.lower() in LOOPBACK_NAMES


def same_origin(origin: str | None, referer: str | None, host: str | None) -> bool:
    """Whether a state-changing request comes from this site (its Origin, else its
    Referer, names the Host it was sent to); a request naming neither passes only
    with the bearer token (checked by the caller)."""
    source = origin or referer
    if source is None or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == (host or "").lower()
