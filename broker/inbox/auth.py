"""How a person proves who they are. The pages never see this: they get an `Account`
from the session (`vaktpost.broker.inbox.app`), whichever authenticator made it.

Two shapes of login exist:
- `PasswordAuthenticator`: the login form posts a name and a password (local accounts,
  `LocalPasswordAuthenticator`; an LDAP bind would be another);
- `RedirectAuthenticator`: the browser is sent to an identity provider and comes back
  with a code (OpenID Connect, e.g. Entra ID). `begin` gives the provider's URL;
  `complete` turns the callback's query into an `Account` (mapping the provider's
  groups or app roles to role and districts), or None.

The app takes one authenticator; rate limiting, the session cookie, CSRF and logout
are the app's and stay the same for every kind (docs/inbox.md, "Login").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from vaktpost.broker.inbox.accounts import Account, Accounts


@runtime_checkable
class PasswordAuthenticator(Protocol):
    kind: str  # "password"

    def authenticate(self, name: str, password: str) -> Account | None:
        """The account if the password is right, else None (unknown names included)."""
        ...


@runtime_checkable
class RedirectAuthenticator(Protocol):
    kind: str  # "redirect"

    def begin(self, callback_url: str, state: str) -> str:
        """The provider URL to send the browser to; it returns to `callback_url` with `state`."""
        ...

    def complete(self, query: Mapping[str, str], state: str) -> Account | None:
        """The account of the person the provider vouches for, or None."""
        ...


Authenticator = PasswordAuthenticator | RedirectAuthenticator


class LocalPasswordAuthenticator:
    """Accounts made with `vaktpost users add`, argon2-hashed passwords in the database."""

    kind = "password"

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def authenticate(self, name: str, password: str) -> Account | None:
        return self.accounts.verify_password(name, password)
