"""kstatus's status computation for a custom resource, in Python.

A transcription of `status.Compute` from sigs.k8s.io/cli-utils/pkg/kstatus/status
(status.go, generic.go; read at kubernetes-sigs/cli-utils 5895ad6c, and identical in Flux's
fork fluxcd/cli-utils, which kustomize-controller's `wait`/`healthChecks` use), restricted to
what applies to a custom resource (no built-in type has its own rules for regsweep.dev):

1. `metadata.deletionTimestamp` set                                     -> Terminating
2. `metadata.generation` set, `status.observedGeneration` set and
   different                                                             -> InProgress
3. the first condition, in list order, that is `Reconciling=True`       -> InProgress
   or `Stalled=True`                                                      -> Failed
4. the first `Ready` condition with status True                         -> Current
                                       with status False or Unknown      -> InProgress
5. otherwise (no conditions kstatus knows)                              -> Current

Things kstatus does not do, worth knowing when reading the results: it never reads a
condition's own `observedGeneration`, never reads `Degraded` or `Progressing`, and a
missing `status.observedGeneration` skips step 2 (so an object without any status is
Current). A field of the wrong type is an error in kstatus (status Unknown); here it raises.
"""

from __future__ import annotations

from dataclasses import dataclass

CURRENT = "Current"
IN_PROGRESS = "InProgress"
FAILED = "Failed"
TERMINATING = "Terminating"


@dataclass
class Result:
    status: str
    message: str


def _int(obj: dict, *path: str) -> int | None:
    value = obj
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if value is None:
        return None
    # unstructured.NestedInt64 accepts only an int64 (JSON numbers decode as int64 when whole).
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{'.'.join(path)} is {value!r}, not an integer")
    return value


def _conditions(obj: dict) -> list[dict]:
    status = obj.get("status")
    if not isinstance(status, dict):
        return []
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        raise TypeError("status.conditions is not a list")
    return [c for c in conditions if isinstance(c, dict)]


def compute(obj: dict) -> Result:
    """kstatus `Compute` for a custom resource given as its JSON object."""
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return Result(TERMINATING, "Resource scheduled for deletion")

    generation = _int(obj, "metadata", "generation")
    if generation is not None:
        observed = _int(obj, "status", "observedGeneration")
        if observed is not None and observed != generation:
            kind = obj.get("kind", "")
            return Result(IN_PROGRESS, f"{kind} generation is {generation}, but latest observed generation is {observed}")

    conditions = _conditions(obj)
    for c in conditions:
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return Result(IN_PROGRESS, c.get("message", ""))
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return Result(FAILED, c.get("message", ""))

    for c in conditions:
        if c.get("type") != "Ready":
            continue
        if c.get("status") == "True":
            return Result(CURRENT, "Resource is Ready")
        if c.get("status") in ("False", "Unknown"):
            return Result(IN_PROGRESS, c.get("message", ""))

    return Result(CURRENT, "Resource is current")
