"""Who is signed in, what their role may do, and the gate every page passes first.

Identity comes from Streamlit's OIDC (`st.login` / `st.user`, `[auth]` in secrets). The role
comes from an identity-provider claim (default `groups`) through the mapping in
`[fraudlens.roles]`; nothing the user can pick in the app changes it. Demo mode (env
`FRAUDLENS_DEMO_MODE=1`, loopback only) signs everyone in as one fixed demo principal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st
from streamlit import runtime
from streamlit.errors import StreamlitSecretNotFoundError

from explainers.errors import AuditError, FraudLensError

__all__ = [
    "NO_ROLE",
    "PERMISSIONS",
    "ROLES",
    "TEST_PRINCIPAL_KEY",
    "Principal",
    "audit_event",
    "auth_configured",
    "can",
    "current_principal",
    "demo_active",
    "demo_mode",
    "deny",
    "require",
    "role_from_claims",
    "role_settings",
    "startup_problem",
]

_LOG = logging.getLogger(__name__)

ROLES = ("analyst", "mle", "admin")
NO_ROLE = "none"
_ANALYST = frozenset({"cases", "patterns", "review", "export"})
_MLE = _ANALYST | {"compare", "promote"}
_ADMIN = _MLE | {"audit", "unmask"}
PERMISSIONS: Mapping[str, frozenset[str]] = {"analyst": _ANALYST, "mle": _MLE, "admin": _ADMIN}

TEST_PRINCIPAL_KEY = "_fraudlens_test_principal"
_DENIED_KEY = "_fraudlens_denied_audited"
DEFAULT_ROLE_CLAIM = "groups"
DEFAULT_ROLE_MAPPING: Mapping[str, str] = {
    "fraud-analysts": "analyst",
    "ml-engineers": "mle",
    "fraudlens-admins": "admin",
}
MIN_COOKIE_SECRET_BYTES = 32
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
DEMO_SUBJECT = "demo"


@dataclass(frozen=True)
class Principal:
    """The signed-in person; ``role`` is one of ROLES, or NO_ROLE when no claim maps."""

    subject: str
    email: str
    name: str
    role: str

    @property
    def actor(self) -> str:
        """How the audit trail names this person."""
        return self.email or self.subject


def demo_mode() -> bool:
    return os.environ.get("FRAUDLENS_DEMO_MODE") == "1"


def demo_active() -> bool:
    """Demo mode is in force: the flag is set and no real sign-in is configured."""
    return demo_mode() and not auth_configured()


def _served() -> bool:
    return runtime.exists() and type(runtime.get_instance()) is runtime.Runtime


def _injected_principal() -> Principal | None:
    """The principal a test put in session state: only with FRAUDLENS_TESTING=1, and never in a
    served app (`streamlit run` has a real Runtime; AppTest runs on a mock of it)."""
    if os.environ.get("FRAUDLENS_TESTING") != "1" or _served():
        return None
    injected = st.session_state.get(TEST_PRINCIPAL_KEY)
    if isinstance(injected, Principal):
        return injected
    if isinstance(injected, Mapping):
        return Principal(**{k: str(injected[k]) for k in ("subject", "email", "name", "role")})
    return None


def _secrets_section(name: str) -> Mapping[str, Any]:
    """A top-level secrets table, or {} when there is none (or no secrets file at all)."""
    try:
        section = st.secrets.get(name)
    except (FileNotFoundError, StreamlitSecretNotFoundError):
        return {}
    return section if isinstance(section, Mapping) else {}


def auth_configured() -> bool:
    return bool(_secrets_section("auth"))


def role_settings() -> tuple[str, Mapping[str, str]]:
    """The claim that carries group names and the group → role mapping (from secrets)."""
    roles = _secrets_section("fraudlens").get("roles", {})
    if not isinstance(roles, Mapping):
        roles = {}
    claim = str(roles.get("claim", DEFAULT_ROLE_CLAIM))
    mapping = roles.get("mapping", DEFAULT_ROLE_MAPPING)
    if not isinstance(mapping, Mapping):
        mapping = DEFAULT_ROLE_MAPPING
    return claim, {str(k): str(v) for k, v in mapping.items() if str(v) in ROLES}


def role_from_claims(claims: Mapping[str, Any], claim: str,
                     mapping: Mapping[str, str]) -> str:
    """The highest role any of the user's groups maps to, else NO_ROLE."""
    raw = claims.get(claim)
    if raw is None:
        groups: Iterable[object] = ()
    elif isinstance(raw, str):
        groups = raw.replace(",", " ").split()
    elif isinstance(raw, Iterable):
        groups = raw
    else:
        groups = (raw,)
    granted = {mapping[str(g)] for g in groups if str(g) in mapping}
    for role in reversed(ROLES):
        if role in granted:
            return role
    return NO_ROLE


def startup_problem() -> str | None:
    """Why the app must refuse to start, or None: no auth and no demo flag, weak cookie
    secret, or demo mode on a non-loopback address."""
    if _injected_principal() is not None:
        return None  # AppTest with an injected identity: no sign-in to configure
    if auth_configured():
        secret = str(_secrets_section("auth").get("cookie_secret", ""))
        if len(secret.encode("utf-8")) < MIN_COOKIE_SECRET_BYTES:
            return ("FraudLens refuses to start: `[auth] cookie_secret` in "
                    f".streamlit/secrets.toml must be at least {MIN_COOKIE_SECRET_BYTES} bytes of "
                    "random data (for example "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`).")
        return None
    if demo_mode():
        address = st.get_option("server.address")
        if address not in LOOPBACK:
            return ("FraudLens refuses to start: demo mode has sign-in disabled, so it only "
                    "listens on loopback. Set `server.address = \"127.0.0.1\"` "
                    f"(now {address!r}), or "
                    "configure sign-in with `[auth]` in .streamlit/secrets.toml.")
        return None
    return ("FraudLens refuses to start: sign-in is not configured. Add an `[auth]` section "
            "(OIDC provider, client id and secret, redirect_uri, cookie_secret) to "
            ".streamlit/secrets.toml — see .streamlit/secrets.example.toml — or, for the "
            "synthetic demo on this machine only, set FRAUDLENS_DEMO_MODE=1 (`make run`).")


def _principal_from_user(user: Mapping[str, Any]) -> Principal:
    claim, mapping = role_settings()
    subject = str(user.get("sub") or user.get("email") or "unknown")
    return Principal(subject=subject, email=str(user.get("email") or ""),
                     name=str(user.get("name") or user.get("email") or subject),
                     role=role_from_claims(user, claim, mapping))


def current_principal() -> Principal | None:
    """The ONE function behind identity: who is signed in, or None."""
    injected = _injected_principal()
    if injected is not None:
        return injected
    if auth_configured():
        user = st.user
        if not user.get("is_logged_in", False):
            return None
        return _principal_from_user(user.to_dict())
    if demo_mode():
        role = os.environ.get("FRAUDLENS_DEMO_ROLE", "admin")
        return Principal(subject=DEMO_SUBJECT, email="demo@fraudlens.invalid", name="Demo user",
                         role=role if role in ROLES else NO_ROLE)
    return None


def can(principal: Principal | None, permission: str) -> bool:
    return principal is not None and permission in PERMISSIONS.get(principal.role, frozenset())


def _audit_log() -> Any:
    from app.shell.resources import audit  # late: keeps the journal closed until someone signs in

    return audit()


def audit_event(action: str, target: str, outcome: str = "ok",
                details: Mapping[str, Any] | None = None) -> None:
    """Append one audit record for the current principal; raises AuditError if not stored."""
    principal = current_principal()
    actor = principal.actor if principal else "anonymous"
    role = principal.role if principal else NO_ROLE
    try:
        _audit_log().append(actor, role, action, target, outcome, details)
    except AuditError:
        raise
    except FraudLensError as exc:  # e.g. the workspace folder is missing
        raise AuditError(f"Could not write the audit record ({action}): {exc}") from exc


def deny(principal: Principal, page: str, permission: str) -> None:
    """Record one denied access and show why; the caller stops the script."""
    try:
        audit_event("access_denied", page, "denied",
                    {"permission": permission, "role": principal.role})
    except AuditError as exc:
        _LOG.error("access denial for %s on %s was not audited: %s", principal.actor, page, exc)
    if principal.role == NO_ROLE:
        st.error("You are signed in, but your account has no FraudLens role. Ask an "
                 "administrator to add you to a FraudLens group.")
    else:
        st.error(f"You don't have access to {page} (role {principal.role}).")


def show_sign_in() -> None:
    """The sign-in prompt: a title, one line and a button; nothing touches the warehouse."""
    st.title("FraudLens")
    st.write("Sign in with your company account to work cases and review patterns.")
    if auth_configured() and st.button("Sign in", type="primary", key="fraudlens_sign_in"):
        provider = _login_provider()
        if provider:
            st.login(provider)
        else:
            st.login()


def _login_provider() -> str | None:
    """The `[auth.<name>]` provider to use, when the config names providers."""
    section = _secrets_section("auth")
    if "server_metadata_url" in section:
        return None
    chosen = _secrets_section("fraudlens").get("login_provider")
    if chosen:
        return str(chosen)
    named = [k for k, v in section.items() if isinstance(v, Mapping)]
    return named[0] if named else None


def require(permission: str, page: str) -> Principal:
    """Called first in every page: the principal if their role has ``permission``; otherwise
    show sign-in or the denial (audited once) and stop the script."""
    principal = current_principal()
    if principal is None:
        show_sign_in()
        st.stop()
    if not can(principal, permission):
        deny(principal, page, permission)
        st.stop()
    return principal
