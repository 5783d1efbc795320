"""Who may do what: roles, API key scopes, permissions and the authenticated `Principal`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from starlette.authentication import BaseUser

from app.db.models import Role, Scope


class Permission(StrEnum):
    """An action an endpoint demands; roles and scopes grant sets of them."""

    READ = "read"  # search, tail, statistics, patterns, alerts, own tenant's settings
    INGEST = "ingest"  # send logs
    MANAGE_OWN_KEYS = "manage_own_keys"  # create/list/revoke keys one created
    MANAGE_KEYS = "manage_keys"  # every key of the tenant, admin-scope keys
    MANAGE_USERS = "manage_users"  # invite, change roles, deactivate, remove
    MANAGE_SETTINGS = "manage_settings"  # tenant settings, webhooks
    MANAGE_ALERTS = "manage_alerts"  # alert rules; acknowledge and resolve alerts


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({P.READ}),
    Role.MEMBER: frozenset({P.READ, P.MANAGE_OWN_KEYS, P.MANAGE_ALERTS}),
    Role.ADMIN: frozenset(
        {P.READ, P.MANAGE_OWN_KEYS, P.MANAGE_KEYS, P.MANAGE_USERS, P.MANAGE_SETTINGS,
         P.MANAGE_ALERTS}
    ),
}
SCOPE_PERMISSIONS: dict[Scope, frozenset[Permission]] = {
    Scope.INGEST: frozenset({P.INGEST}),
    Scope.READ: frozenset({P.READ}),
    Scope.ADMIN: frozenset(Permission),
}


def creatable_scopes(permissions: frozenset[Permission]) -> frozenset[Scope]:
    """Key scopes a caller may create: admin keys need `manage_keys`, no key outranks its maker."""
    if P.MANAGE_KEYS in permissions:
        return frozenset(Scope)
    if P.MANAGE_OWN_KEYS in permissions:
        return frozenset({Scope.INGEST, Scope.READ})
    return frozenset()


@dataclass(frozen=True)
class Principal(BaseUser):
    """The authenticated caller of one request: a user in one tenant, or an API key.

    Every endpoint reads the tenant from here (never from the request body or path), so a
    caller cannot reach another tenant's data.
    """

    kind: Literal["user", "api_key"]
    tenant_id: int
    tenant_slug: str
    permissions: frozenset[Permission]
    role: Role | None = None
    scope: Scope | None = None
    user_id: int | None = None
    email: str | None = None
    api_key_id: int | None = None
    session_id: str | None = None

    @classmethod
    def for_user(
        cls,
        *,
        user_id: int,
        email: str,
        tenant_id: int,
        tenant_slug: str,
        role: Role,
        session_id: str | None = None,
    ) -> Principal:
        return cls(
            kind="user",
            tenant_id=tenant_id,
            tenant_slug=tenant_slug,
            permissions=ROLE_PERMISSIONS[role],
            role=role,
            user_id=user_id,
            email=email,
            session_id=session_id,
        )

    @classmethod
    def for_api_key(
        cls, *, api_key_id: int, tenant_id: int, tenant_slug: str, scope: Scope
    ) -> Principal:
        return cls(
            kind="api_key",
            tenant_id=tenant_id,
            tenant_slug=tenant_slug,
            permissions=SCOPE_PERMISSIONS[scope],
            scope=scope,
            api_key_id=api_key_id,
        )

    def can(self, permission: Permission | str) -> bool:
        """Whether this caller holds `permission`."""
        return Permission(permission) in self.permissions

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        if self.kind == "user":
            return self.email or f"user {self.user_id}"
        return f"API key {self.api_key_id}"

    @property
    def identity(self) -> str:
        if self.kind == "user":
            return f"user:{self.user_id}"
        return f"apikey:{self.api_key_id}"

    def describe(self) -> str:
        """`user admin@x (role member)` / `API key 3 (scope ingest)` for error messages."""
        if self.kind == "user":
            return f"user {self.display_name} (role {self.role})"
        return f"{self.display_name} (scope {self.scope})"
