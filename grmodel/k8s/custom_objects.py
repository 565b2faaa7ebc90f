"""Create a custom resource that runs to an end (a PyTorchJob, a SparkApplication) through the
``kubernetes`` client's ``CustomObjectsApi``, or attach to the one of that name made for the
same inputs, and wait for it to finish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustomObjectRun:
    """Create a custom resource that runs to an end (a PyTorchJob, a SparkApplication), or
    attach to the one of that name carrying the same digest label, and poll its state."""

    resource: tuple[str, str, str]  # group, version, plural
    kind: str
    digest_label: str
    error: type[Exception]
    state_of: Callable[[dict[str, Any]], tuple[str, str]]  # (state, reason)
    done: str
    failed: tuple[str, ...]
    failure: Callable[[str, str, str], str]  # (where, reason, "-n NAMESPACE NAME") -> message
    clash_rule: str
    timeout_s: float  # how long a run of this kind may take by default
    poll_s: float

    def submit_and_wait(
        self,
        manifest: dict[str, Any],
        *,
        timeout_s: float | None = None,
        poll_s: float | None = None,
        api: Any = None,
        delete_on_timeout: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Create the resource (or attach to the one of that name made for the same inputs) and
        wait until it is done; return it then. Raise ``error`` when it fails, TimeoutError
        (after deleting it, unless ``delete_on_timeout`` is False) when ``timeout_s`` (default:
        the kind's) passes first. ``api`` is a ``kubernetes.client.CustomObjectsApi`` (default:
        in-cluster config, else the local kubeconfig)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        poll_s = self.poll_s if poll_s is None else poll_s
        api = api if api is not None else custom_objects_api()
        group, version, plural = self.resource
        meta = manifest["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        where = f"{self.kind} {namespace}/{name}"
        try:
            api.create_namespaced_custom_object(group, version, namespace, plural, manifest)
            log.info("%s: created", where)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:
                raise self.error(f"{where}: could not be created ({api_reason(exc)})") from None
            existing = self._get(api, namespace, name, where)
            digest = meta["labels"].get(self.digest_label)
            if existing.get("metadata", {}).get("labels", {}).get(self.digest_label) != digest:
                raise self.error(f"{where}: already exists with another config (rule:"
                                 f" {self.clash_rule})") from None
            log.info("%s: already exists for this config; waiting for it", where)

        deadline = clock() + timeout_s
        last = None
        while True:
            obj = self._get(api, namespace, name, where)
            state, reason = self.state_of(obj)
            if state != last:
                log.info("%s: %s%s", where, state, f" ({reason})" if reason else "")
                last = state
            if state == self.done:
                return obj
            if state in self.failed:
                raise self.error(self.failure(where, reason, f"-n {namespace} {name}"))
            if clock() >= deadline:
                if delete_on_timeout:
                    try:
                        api.delete_namespaced_custom_object(group, version, namespace, plural, name)
                    except Exception as exc:  # report the timeout, not the clean-up
                        log.warning("%s: could not delete after the timeout (%s)", where,
                                    api_reason(exc))
                raise TimeoutError(f"{where}: not finished after {timeout_s:.0f} s (last state"
                                   f" {state}); {'deleted' if delete_on_timeout else 'left running'}")
            sleep(poll_s)

    def _get(self, api: Any, namespace: str, name: str, where: str) -> dict[str, Any]:
        group, version, plural = self.resource
        try:
            return api.get_namespaced_custom_object(group, version, namespace, plural, name)
        except Exception as exc:
            raise self.error(f"{where}: could not be read ({api_reason(exc)})") from None


def custom_objects_api() -> Any:
    # lazy: the Kubernetes client (kfp's dependency, not ours) only when a resource is
    # submitted; the pipeline and its stages import grmodel.k8s for its names and defaults
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def api_reason(exc: Exception) -> str:
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    return f"HTTP {status} {reason}" if status is not None else f"{type(exc).__name__}: {exc}"
