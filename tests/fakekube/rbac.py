"""RBAC as the API server's authorizer applies it, over the Roles, ClusterRoles and bindings stored in the fake.

A request is allowed when a rule of a role bound to the user (by name, by a group, or as a ServiceAccount)
matches its API group, resource (`pods`, `pods/status`), verb and, where the rule lists them, resource name;
`*` matches anything. ClusterRoleBindings grant everywhere; RoleBindings (to a Role or a ClusterRole) only in
their namespace, which for a namespace object is its own name. Discovery, /version, /healthz and /openapi are
open to every authenticated user (the `system:discovery` role). Not modelled: aggregated ClusterRoles
(`aggregationRule`), non-resource URL rules, impersonation and escalation checks on RBAC writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @staticmethod
    def service_account(namespace: str, name: str) -> User:
        return User(f"system:serviceaccount:{namespace}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED))


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Attributes:
    """What is asked: `verb` on `group`/`resource`(/`subresource`) `name` in `namespace` ("" cluster-wide)."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str

    def describe(self, user: User) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        scope = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        named = f' "{self.name}"' if self.name else ""
        return (f'{qualified}{named} is forbidden: User "{user.name}" cannot {self.verb} resource "{what}" in '
                f'API group "{self.group}" {scope}')


def _subject_matches(subject: dict[str, Any], user: User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        return user.name == f"system:serviceaccount:{subject.get('namespace') or binding_ns}:{name}"
    return False


def _rule_matches(rule: dict[str, Any], a: Attributes) -> bool:
    def has(values: Iterable[str] | None, wanted: str) -> bool:
        listed = list(values or [])
        return "*" in listed or wanted in listed

    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    resources = list(rule.get("resources") or [])
    resource_ok = ("*" in resources or resource in resources
                   or (bool(a.subresource) and f"*/{a.subresource}" in resources))
    names = rule.get("resourceNames") or []
    return (has(rule.get("apiGroups"), a.group) and resource_ok and has(rule.get("verbs"), a.verb)
            and (not names or a.name in names))


def allowed(objects: Iterable[tuple[str, dict[str, Any]]], user: User, a: Attributes) -> bool:
    """Whether the stored RBAC objects (kind, object) let `user` do `a`."""
    roles: dict[tuple[str, str, str], dict[str, Any]] = {}
    bindings: list[tuple[str, dict[str, Any]]] = []
    for kind, obj in objects:
        meta = obj.get("metadata") or {}
        if kind in ("Role", "ClusterRole"):
            roles[(kind, meta.get("namespace", ""), meta["name"])] = obj
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            bindings.append((kind, obj))
    for kind, binding in bindings:
        ns = (binding.get("metadata") or {}).get("namespace", "")
        if kind == "RoleBinding" and ns != a.namespace:
            continue
        if not any(_subject_matches(s, user, ns) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        role = roles.get((ref.get("kind", ""), ns if ref.get("kind") == "Role" else "", ref.get("name", "")))
        if role is not None and any(_rule_matches(r, a) for r in role.get("rules") or []):
            return True
    return False
