"""`replication-operator check`: are the CRDs installed and may the operator do its job?"""

from __future__ import annotations

import asyncio
from typing import TextIO

import kubernetes
from kubernetes.client.exceptions import ApiException

from replication_operator import GROUP, kube

KINDS = ("databaseservers", "replications", "replicationpolicies", "tokens")
# (group, resource, verb, subresource): every call the operator makes
NEEDED = [
    *[(GROUP, k, v, "") for k in KINDS for v in ("get", "list", "watch", "patch")],
    *[(GROUP, k, "patch", "status") for k in KINDS],
    (GROUP, "replications", "create", ""), (GROUP, "replications", "delete", ""),
    ("", "secrets", "get", ""), ("", "secrets", "create", ""), ("", "secrets", "update", ""),
    ("", "secrets", "delete", ""), ("", "events", "create", ""),
]
# with --leader-elect: the Lease in the operator's own namespace
LEADER_ELECTION = [("coordination.k8s.io", "leases", v, "") for v in ("get", "create", "update")]


async def check_cluster(namespace: str, out: TextIO, lease_namespace: str | None = None
                        ) -> int:
    kube.configure()
    ext = kubernetes.client.ApiextensionsV1Api(kube.api())
    auth = kubernetes.client.AuthorizationV1Api(kube.api())
    failures = 0
    for kind in KINDS:
        try:
            await asyncio.to_thread(ext.read_custom_resource_definition, f"{kind}.{GROUP}")
            print(f"ok    CRD {kind}.{GROUP}", file=out)
        except ApiException as exc:
            failures += 1
            print(f"FAIL  CRD {kind}.{GROUP}: {exc.status} {exc.reason}", file=out)
    needed = [(*n, namespace) for n in NEEDED] + \
        [(*n, lease_namespace) for n in LEADER_ELECTION if lease_namespace]
    for group, resource, verb, sub, where in needed:
        review = kubernetes.client.V1SelfSubjectAccessReview(
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    group=group, resource=resource, verb=verb, subresource=sub or None,
                    namespace=where)))
        result = await asyncio.to_thread(auth.create_self_subject_access_review, review)
        allowed = result.status is not None and bool(result.status.allowed)
        failures += not allowed
        what = f"{verb} {resource}{'/' + sub if sub else ''}{'.' + group if group else ''}"
        print(f"{'ok  ' if allowed else 'FAIL'}  may {what} in {where}", file=out)
    return 1 if failures else 0
