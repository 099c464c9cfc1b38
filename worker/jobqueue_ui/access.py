"""Who may use the UI, and as what: two roles, each with a secret from the environment (a
Kubernetes Secret), and the CSRF tokens that tie a form to the identity it was shown to.

- **admin** (``JOBQUEUE_UI_ADMIN_TOKEN``): may look and act (retry, cancel, delete, pause).
- **viewer** (``JOBQUEUE_UI_VIEWER_TOKEN``): may look only.

A client sends a secret as ``Authorization: Bearer <token>``, or as the password of HTTP
Basic with any user name, which the audit trail records as who acted (a browser asks for
it). With neither token set the UI is open, and every visitor is admin: allowed only when it
listens on a loopback address, where nobody else can reach it.

Basic credentials (and an open UI) are sent by the browser by itself, even on a request
another site makes it send: every action through them must carry the CSRF token of the form
it came from, an HMAC of the identity. A Bearer token is never sent by itself, so an API
call with one needs none.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import hmac
import ipaddress
import secrets
import typing

import jobqueue

CHALLENGE: typing.Final = 'Basic realm="jobqueue", charset="UTF-8"'


class Role(enum.StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking: ``actor`` (the Basic user name, or the role's name), the role, and
    whether the browser sends these credentials by itself (``ambient``: CSRF applies)."""

    actor: str
    role: Role
    ambient: bool

    @property
    def may_act(self) -> bool:
        return self.role is Role.ADMIN


def is_loopback(host: str) -> bool:
    """Whether ``host`` (what the UI listens on) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Access:
    """The configured secrets; answers who a request's credentials are."""

    def __init__(self, *, admin_token: str | None, viewer_token: str | None, host: str) -> None:
        tokens = {Role.ADMIN: admin_token or None, Role.VIEWER: viewer_token or None}
        for role, token in tokens.items():
            if token is not None and len(token) < 16:
                raise jobqueue.ConfigurationError(
                    f"the {role} token is {len(token)} characters long; use 16 or more"
                    " (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
                )
        if admin_token and admin_token == viewer_token:
            raise jobqueue.ConfigurationError("the admin and viewer tokens must differ")
        self.open = not any(tokens.values())
        if self.open and not is_loopback(host):
            raise jobqueue.ConfigurationError(
                f"the UI would listen on {host} with no authentication: set"
                " JOBQUEUE_UI_ADMIN_TOKEN (and JOBQUEUE_UI_VIEWER_TOKEN for read-only"
                " access), or listen on 127.0.0.1"
            )
        self._tokens = {role: token.encode() for role, token in tokens.items() if token}
        # Forms stay valid across restarts and replicas when derived from the secrets; an
        # open UI's are good for the process's life.
        self._csrf_key = (
            secrets.token_bytes(32)
            if self.open
            else hashlib.sha256(
                b"jobqueue-ui-csrf\0" + b"\0".join(sorted(self._tokens.values()))
            ).digest()
        )

    def identify(self, authorization: str | None) -> Identity | None:
        """The identity an ``Authorization`` header proves, or ``None``."""
        if self.open:
            return Identity("local", Role.ADMIN, ambient=True)
        if not authorization:
            return None
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            role = self._role_of(credentials.strip().encode())
            return None if role is None else Identity(role.value, role, ambient=False)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, separator, password = decoded.partition(":")
            role = self._role_of(password.encode()) if separator else None
            if role is None:
                return None
            actor = user.strip()[:100] if user.strip().isprintable() else ""
            return Identity(actor or role.value, role, ambient=True)
        return None

    def _role_of(self, secret: bytes) -> Role | None:
        found = None
        for role, token in self._tokens.items():  # every one compared, in constant time
            if hmac.compare_digest(secret, token):
                found = role
        return found

    def csrf_token(self, identity: Identity) -> str:
        message = f"{identity.role}\0{identity.actor}".encode()
        return hmac.new(self._csrf_key, message, hashlib.sha256).hexdigest()

    def csrf_valid(self, identity: Identity, token: str | None) -> bool:
        """Whether ``token`` is the one ``identity``'s forms carry; an identity the browser
        does not send by itself needs none."""
        if not identity.ambient:
            return True
        return token is not None and hmac.compare_digest(token, self.csrf_token(identity))
