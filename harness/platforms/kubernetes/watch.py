"""Waiting on cluster state by watching, with a deadline — never by sleeping.

Why watches: a poll loop either sleeps (slow, and forbidden here) or hammers the API server; a watch
wakes exactly when the object changes. The loop is: list (which also gives a resourceVersion), test
the predicate, then watch from that version until the predicate holds or the deadline passes; a
watch that ends (server timeout, 410 Gone) is simply re-listed. The timeout message says what was
waited for and the last thing the predicate reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.waiting import Deadline, WaitTimeout

#: predicate over the current objects (name -> raw dict) -> (done, description of the state)
ListPredicate = Callable[[Mapping[str, Mapping[str, Any]]], tuple[bool, str]]


def wait_list(dyn: Any, res: Any, namespace: str | None, predicate: ListPredicate, timeout: float, what: str,
              label_selector: str | None = None, field_selector: str | None = None) -> str:
    """Block until ``predicate`` holds over the selected objects; returns its last description."""
    from kubernetes.client.exceptions import ApiException

    deadline = Deadline(timeout)
    last = "nothing observed yet"
    while True:
        listing = res.get(namespace=namespace, label_selector=label_selector, field_selector=field_selector)
        objs = {i["metadata"]["name"]: i for i in listing.to_dict().get("items", [])}
        done, last = predicate(objs)
        if done:
            return last
        if deadline.expired():
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last}")
        rv = listing.metadata.resourceVersion
        try:
            for event in dyn.watch(res, namespace=namespace, label_selector=label_selector,
                                   field_selector=field_selector, resource_version=rv,
                                   timeout=max(1, min(int(deadline.remaining()) + 1, 60))):
                obj = event["raw_object"]
                if event["type"] == "ERROR":
                    break  # e.g. 410 Gone: re-list
                name = obj.get("metadata", {}).get("name")
                if event["type"] == "DELETED":
                    objs.pop(name, None)
                elif name:
                    objs[name] = obj
                done, last = predicate(objs)
                if done:
                    return last
                if deadline.expired():
                    break
        except ApiException as exc:
            if exc.status != 410:
                raise
        if deadline.expired():
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last}")


def wait_object(dyn: Any, res: Any, namespace: str | None, name: str,
                predicate: Callable[[Mapping[str, Any] | None], tuple[bool, str]], timeout: float, what: str) -> str:
    """Like ``wait_list`` for one object; the predicate sees None while it does not exist."""
    return wait_list(dyn, res, namespace, lambda objs: predicate(objs.get(name)), timeout, what,
                     field_selector=f"metadata.name={name}")


def wait_gone(dyn: Any, res: Any, namespace: str | None, name: str, timeout: float, what: str) -> str:
    return wait_object(dyn, res, namespace, name,
                       lambda o: (o is None, "gone" if o is None else _phase(o)), timeout, what)


def _phase(obj: Mapping[str, Any]) -> str:
    st = obj.get("status") or {}
    deleting = " (deleting)" if obj.get("metadata", {}).get("deletionTimestamp") else ""
    return f"{st.get('phase', 'present')}{deleting}"
