"""CSRF protection: a signed double-submit token.

Every browser gets a random nonce in an HttpOnly cookie; forms carry
HMAC(secret key, nonce) in a hidden field `csrf_token` (scripts may send it as the
`X-CSRF-Token` header). Another site can make the browser send the cookie but can
neither read it nor compute the HMAC without the inbox's secret key. It works the
same before login (the login form) and after.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CSRF_COOKIE = "vaktpost_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSED = "CSRF token missing or invalid"  # the 403 detail the error page recognises


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def token_for(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


def valid(secret: bytes, nonce: str | None, token: str | None) -> bool:
    if not nonce or not token:
        return False
    return hmac.compare_digest(token_for(secret, nonce), token)
