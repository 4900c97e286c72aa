"""ClusterRole aggregation, done as kube-controller-manager's `clusterrole-aggregation` does it.

The harness runs no controller-manager, so an aggregated ClusterRole (`aggregationRule`, such
as config/rbac.yaml's `mtping-addressable-resolver`) would keep `rules: []`. `aggregate` fills
each one in from the ClusterRoles its selectors match, rules deduplicated, the same result the
controller writes in a real cluster. Call it after applying or labelling ClusterRoles. It must
never grant anything the matched roles do not.
"""

from __future__ import annotations

from typing import Any

from tests.harness.rest import RestClient

CLUSTER_ROLES = "/apis/rbac.authorization.k8s.io/v1/clusterroles"


def aggregate(rest: RestClient) -> dict[str, list[dict[str, Any]]]:
    """Fill every aggregated ClusterRole's rules; their names with the rules written."""
    roles = rest.get(CLUSTER_ROLES).get("items", [])
    written: dict[str, list[dict[str, Any]]] = {}
    for role in roles:
        rule = role.get("aggregationRule")
        if not rule:
            continue
        rules = _rules_of_matching(roles, role["metadata"]["name"], rule)
        if rules != (role.get("rules") or []):
            body = {**role, "rules": rules}
            rest.request("PUT", f"{CLUSTER_ROLES}/{role['metadata']['name']}", body=body)
        written[role["metadata"]["name"]] = rules
    return written


def _rules_of_matching(
    roles: list[dict[str, Any]], aggregator: str, rule: dict[str, Any]
) -> list[dict[str, Any]]:
    selectors = rule.get("clusterRoleSelectors") or []
    matching = sorted(
        (
            role
            for role in roles
            if role["metadata"]["name"] != aggregator
            and any(_matches(role, selector) for selector in selectors)
        ),
        key=lambda role: role["metadata"]["name"],
    )
    rules: list[dict[str, Any]] = []
    for role in matching:
        for granted in role.get("rules") or []:
            if granted not in rules:
                rules.append(granted)
    return rules


def _matches(role: dict[str, Any], selector: dict[str, Any]) -> bool:
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions in an aggregation selector")
    labels = role["metadata"].get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in wanted.items())
