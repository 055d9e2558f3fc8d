"""The CRD rejects at admission what can be rejected there: policies validated against the
committed CRD's openAPIV3Schema (jsonschema, as the API server's structural schema does) and its
x-kubernetes-validations (CEL, evaluated with cel-python), valid ones accepted, invalid ones
refused each for the reason named. What only regsweep can check (cron expressions, time
zones, regular expressions, rules that can never match) stays in its own validation
(`regsweep plan` and the operator's Invalid phase), and is not expected here.

Not evaluated: the API server's own defaulting and pruning, and CEL cost limits.
"""

import copy
from pathlib import Path

import celpy
import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "registrycleanuppolicies.regsweep.dev.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

BASE = {
    "apiVersion": "regsweep.dev/v1alpha1",
    "kind": "RegistryCleanupPolicy",
    "metadata": {"name": "nightly", "namespace": "registry"},
    "spec": {
        "registry": {"deployment": "docker-registry", "url": "http://docker-registry.registry.svc:5000", "hosts": ["registry.example.com", "docker-registry.registry.svc:5000"]},
        "schedule": "0 3 * * *",
        "rules": [{"repositories": ["**"], "keepLatest": 10, "keepWithin": "30d", "untagged": "Delete", "untaggedGracePeriod": "24h"}],
        "maintenance": {"mode": "Auto", "maxReadOnlyDuration": "1h", "sweepGracePeriod": "30s"},
        "limits": {"maxDeletedTags": 500, "maxDeletedPercent": 30},
        "approval": "Manual",
        "quarantine": {"keepFor": "7d"},
        "startingDeadlineSeconds": 600,
    },
}


def with_(path, value):
    doc = copy.deepcopy(BASE)
    node = doc
    *parents, last = path
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()


def to_cel(value):
    if isinstance(value, dict):
        return celpy.celtypes.MapType({celpy.celtypes.StringType(k): to_cel(v) for k, v in value.items()})
    if isinstance(value, list):
        return celpy.celtypes.ListType([to_cel(v) for v in value])
    if isinstance(value, bool):
        return celpy.celtypes.BoolType(value)
    if isinstance(value, int):
        return celpy.celtypes.IntType(value)
    if isinstance(value, str):
        return celpy.celtypes.StringType(value)
    return value


def cel_violations(schema, value, path="", out=None):
    """Every x-kubernetes-validations rule of the schema evaluated where the value has it."""
    out = [] if out is None else out
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": to_cel(value)}):
            out.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                cel_violations(sub, value[key], f"{path}.{key}", out)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            cel_violations(schema["items"], item, f"{path}[{i}]", out)
    return out


def problems(doc):
    validator = jsonschema.Draft4Validator(SCHEMA)
    found = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    return found + cel_violations(SCHEMA, doc)


def test_the_complete_example_is_accepted():
    assert problems(BASE) == []


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted(path):
    assert problems(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("host", ["registry.example.com", "registry.example.com:443", "docker-registry.registry.svc:5000", "10.0.0.7:5000", "[fd00::1]:5000", "my_registry:5000"])
def test_host_names_workloads_pull_by_are_accepted(host):
    assert problems(with_(["spec", "registry", "hosts"], [host])) == []


INVALID = {
    "negative keepLatest": ((["spec", "rules", 0, "keepLatest"], -1), "keepLatest", "minimum"),
    "no repositories": ((["spec", "rules", 0, "repositories"], []), "repositories", "non-empty"),
    "a duration in words": ((["spec", "rules", 0, "keepWithin"], "thirty days"), "keepWithin", "does not match"),
    "a grace period without unit": ((["spec", "rules", 0, "untaggedGracePeriod"], "24"), "untaggedGracePeriod", "does not match"),
    "a read-only limit in words": ((["spec", "maintenance", "maxReadOnlyDuration"], "an hour"), "maxReadOnlyDuration", "does not match"),
    "keepFor in words": ((["spec", "quarantine", "keepFor"], "a week"), "keepFor", "does not match"),
    "a URL without scheme": ((["spec", "registry", "url"], "docker-registry.registry.svc:5000"), "url", "does not match"),
    "a host with a scheme": ((["spec", "registry", "hosts"], ["https://registry.example.com"]), "hosts", "does not match"),
    "a host with a path": ((["spec", "registry", "hosts"], ["registry.example.com/team"]), "hosts", "does not match"),
    "an unknown untagged action": ((["spec", "rules", 0, "untagged"], "delete"), "untagged", "is not one of"),
    "an unknown approval": ((["spec", "approval"], "Sometimes"), "approval", "is not one of"),
    "an unknown maintenance mode": ((["spec", "maintenance", "mode"], "Freeze"), "mode", "is not one of"),
    "a percentage over 100": ((["spec", "limits", "maxDeletedPercent"], 150), "maxDeletedPercent", "maximum"),
    "a negative tag limit": ((["spec", "limits", "maxDeletedTags"], -5), "maxDeletedTags", "minimum"),
    "a zero starting deadline": ((["spec", "startingDeadlineSeconds"], 0), "startingDeadlineSeconds", "minimum"),
    "a starting deadline without a schedule (CEL)": ((["spec", "schedule"], DELETE), "spec", "startingDeadlineSeconds applies to scheduled runs"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_policies_are_refused_for_their_reason(case):
    (path, value), field, reason = INVALID[case]
    found = problems(with_(path, value))
    assert found, f"{case}: accepted"
    assert any(field in p and (reason in p or reason in p.replace("is too short", "non-empty")) for p in found), f"{case}: {found}"
