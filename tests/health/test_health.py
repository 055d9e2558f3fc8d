"""GitOps health of a RegistryCleanupPolicy, checked on the statuses the operator writes.

- Argo CD: deploy/gitops/argocd-health.lua runs in a real Lua 5.1 interpreter (Debian's
  `lua5.1`; scripts/install-test-deps.sh installs it) with `obj` built from each fixture
  tests/health/statuses/<case>.json, in a sandbox shaped like Argo CD's (only `obj` and the
  base/string/table/math functions; any other global is an error).
- Flux: kstatus's rules (tests/health/kstatus.py) on the same fixtures.
Both are compared with tests/health/expected.yaml, which deploy/gitops/README.md's table must
agree with, and the example argocd-cm.yaml must embed the script verbatim.

Run on its own with `python3 -m pytest tests/health -q`. REGSWEEP_HEALTH_STATUSES points the
suite at another directory of fixtures (the default is tests/health/statuses).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kstatus  # noqa: E402  (tests/health/kstatus.py, whatever pytest's import mode)

ROOT = HERE.parent.parent
GITOPS = ROOT / "deploy" / "gitops"
SCRIPT = GITOPS / "argocd-health.lua"
CONFIGMAP = GITOPS / "argocd-cm.yaml"
FLUX = GITOPS / "flux-kustomization.yaml"
README = GITOPS / "README.md"
EXPECTED_FILE = HERE / "expected.yaml"
STATUSES = Path(os.environ.get("REGSWEEP_HEALTH_STATUSES") or HERE / "statuses")
HEALTH_KEY = "resource.customizations.health.regsweep.dev_RegistryCleanupPolicy"
ARGOCD_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
KSTATUS_STATUSES = {"Current", "InProgress", "Failed", "Terminating"}

EXPECTED: dict[str, dict] = yaml.safe_load(EXPECTED_FILE.read_text()) or {}


def fixture_names() -> set[str]:
    if not STATUSES.is_dir():
        return set()
    return {p.stem for p in STATUSES.glob("*.json")}


CASES = sorted(set(EXPECTED) | fixture_names())


def load_case(case: str) -> tuple[dict, dict]:
    """The fixture and its expectations; skips while the fixtures are not generated yet."""
    if not STATUSES.is_dir():
        pytest.skip(f"{STATUSES} does not exist yet (it is generated from the operator's code)")
    path = STATUSES / f"{case}.json"
    assert path.is_file(), f"expected.yaml has case {case!r} but there is no fixture {path}"
    assert case in EXPECTED, f"fixture {path.name} has no entry in {EXPECTED_FILE.name}: add one"
    return json.loads(path.read_text()), EXPECTED[case]


# --- running the health script in Lua 5.1 ------------------------------------------------


def lua_binary() -> str:
    lua = shutil.which("lua5.1")
    if lua is None:
        pytest.fail("lua5.1 is not installed: run scripts/install-test-deps.sh (CI installs it), or apt-get install lua5.1")
    return lua


def lua_string(text: str) -> str:
    """A Lua 5.1 string literal: printable ASCII as is, every other byte as a \\ddd escape."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if 0x20 <= byte < 0x7F and ch not in '"\\':
            out.append(ch)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_value(value) -> str:
    """A JSON value as a Lua table constructor, as Argo CD hands `obj` to the script (JSON
    null is nil, numbers are Lua numbers, arrays are sequences from 1)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_string(k)}] = {lua_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


# Argo CD runs the script as a chunk with `obj` set and returns what the chunk returns. The
# sandbox gives it the functions Argo CD's Lua offers and makes reading or setting any other
# global an error, so a typo or a library Argo CD lacks fails here rather than in the cluster.
DRIVER = """
local obj = {obj}
local chunk, err = loadfile({script})
if not chunk then io.stderr:write(err) os.exit(2) end
local env = {{ obj = obj }}
for _, name in ipairs({{"assert", "error", "ipairs", "next", "pairs", "pcall", "select",
    "tonumber", "tostring", "type", "unpack", "string", "table", "math"}}) do
  env[name] = _G[name]
end
setmetatable(env, {{
  __index = function(_, k) error("the health script read the global " .. tostring(k), 2) end,
  __newindex = function(_, k) error("the health script set the global " .. tostring(k), 2) end,
}})
setfenv(chunk, env)
local ok, hs = pcall(chunk)
if not ok then io.stderr:write(tostring(hs)) os.exit(3) end
if type(hs) ~= "table" then io.stderr:write("the script returned " .. type(hs)) os.exit(4) end
if type(hs.status) ~= "string" or type(hs.message) ~= "string" then
  io.stderr:write("hs.status and hs.message must be strings") os.exit(5)
end
io.write(hs.status, "\\n", hs.message)
"""


def argocd_health(obj: dict) -> tuple[str, str]:
    program = DRIVER.format(obj=lua_value(obj), script=lua_string(str(SCRIPT)))
    run = subprocess.run([lua_binary(), "-"], input=program, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, f"lua5.1 failed ({run.returncode}): {run.stderr}"
    status, _, message = run.stdout.partition("\n")
    assert status in ARGOCD_STATUSES, f"hs.status {status!r} is not an Argo CD health status"
    return status, message


# --- the fixtures --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_argocd_health(case):
    obj, want = load_case(case)
    status, message = argocd_health(obj)
    assert status == want["argocd"], f"{case}: Argo CD health {status} ({message!r}), expected {want['argocd']}"
    assert want["message"] in message, f"{case}: hs.message {message!r} lacks {want['message']!r}"


@pytest.mark.parametrize("case", CASES)
def test_kstatus(case):
    obj, want = load_case(case)
    result = kstatus.compute(obj)
    assert result.status == want["kstatus"], f"{case}: kstatus {result.status} ({result.message!r}), expected {want['kstatus']}"
    if "kstatus_message" in want:
        assert want["kstatus_message"] in result.message, f"{case}: kstatus message {result.message!r} lacks {want['kstatus_message']!r}"


@pytest.mark.parametrize("case", CASES)
def test_fixture_is_the_case_it_names(case):
    obj, want = load_case(case)
    assert (obj.get("apiVersion"), obj.get("kind")) == ("regsweep.dev/v1alpha1", "RegistryCleanupPolicy")
    if "phase" in want:
        assert obj["status"].get("phase") == want["phase"], f"{case}: status.phase is {obj['status'].get('phase')!r}"
    if case == "new-generation-not-observed":
        generation = obj["metadata"]["generation"]
        assert obj["status"]["observedGeneration"] < generation
        assert all(c.get("observedGeneration", 0) < generation for c in obj["status"]["conditions"])


def test_every_case_has_a_fixture_and_every_fixture_a_case():
    if not STATUSES.is_dir():
        pytest.skip(f"{STATUSES} does not exist yet (it is generated from the operator's code)")
    fixtures = fixture_names()
    assert not set(EXPECTED) - fixtures, f"cases in expected.yaml without a fixture in {STATUSES}: {sorted(set(EXPECTED) - fixtures)}"
    assert not fixtures - set(EXPECTED), f"fixtures without a case in expected.yaml: {sorted(fixtures - set(EXPECTED))}"


def test_expectations_are_well_formed():
    assert EXPECTED, "expected.yaml is empty"
    for case, want in EXPECTED.items():
        assert set(want) <= {"phase", "argocd", "message", "kstatus", "kstatus_message"}, case
        assert want["argocd"] in ARGOCD_STATUSES - {"Missing", "Unknown"}, case
        assert want["kstatus"] in KSTATUS_STATUSES, case
        assert isinstance(want["message"], str) and want["message"], case


# --- the shipped files agree with each other -----------------------------------------------


def test_configmap_embeds_the_script_verbatim():
    docs = [d for d in yaml.safe_load_all(CONFIGMAP.read_text()) if d]
    assert len(docs) == 1
    cm = docs[0]
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"
    assert cm["data"][HEALTH_KEY] == SCRIPT.read_text(), f"{CONFIGMAP.name}'s {HEALTH_KEY} differs from {SCRIPT.name}: copy it again"


def test_flux_example_health_checks_policies():
    # The CEL expressions themselves are not evaluated here (no CEL engine in the suite).
    docs = [d for d in yaml.safe_load_all(FLUX.read_text()) if d]
    assert len(docs) == 1
    ks = docs[0]
    assert (ks["apiVersion"], ks["kind"]) == ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    assert ks["spec"]["wait"] is True
    [exprs] = [e for e in ks["spec"]["healthCheckExprs"] if e["kind"] == "RegistryCleanupPolicy"]
    assert exprs["apiVersion"] == "regsweep.dev/v1alpha1"
    assert {"current", "inProgress", "failed"} <= set(exprs)
    assert "AwaitingApproval" in exprs["current"] and "Stalled" in exprs["failed"] and "Reconciling" in exprs["inProgress"]


def readme_table() -> dict[str, tuple[str, str, str]]:
    """Case -> (phase, Argo CD, kstatus) from README.md's summary table, whose rows read
    `| `case` | phase | conditions | Argo CD | kstatus |`."""
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z-]+`", cells[0]):
            rows[cells[0].strip("`")] = (cells[1], cells[3], cells[4])
    return rows


def test_readme_table_says_what_the_tests_check():
    table = readme_table()
    assert set(table) == set(EXPECTED), f"README.md's table cases differ: {sorted(set(table) ^ set(EXPECTED))}"
    for case, want in EXPECTED.items():
        says = (want.get("phase", "any"), want["argocd"], want["kstatus"])
        assert table[case] == says, f"README.md says {table[case]} for {case}, the tests {says}"


# --- statuses no fixture has: before the operator writes anything, partial statuses ---------


def policy(generation=2, status=None):
    obj = {
        "apiVersion": "regsweep.dev/v1alpha1",
        "kind": "RegistryCleanupPolicy",
        "metadata": {"name": "p", "namespace": "registry", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def condition(type_, status, reason, message="", generation=2):
    return {"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": generation}


def idle_conditions(generation=2):
    return [
        condition("Degraded", "False", "AsExpected", "", generation),
        condition("Progressing", "False", "Idle", "", generation),
        condition("Ready", "True", "Idle", "next run at 2026-01-01T00:00:00+00:00", generation),
        condition("Reconciling", "False", "Idle", "", generation),
        condition("Stalled", "False", "Idle", "", generation),
    ]


def test_no_status_yet():
    assert argocd_health(policy()) == ("Progressing", "Waiting for the regsweep operator to report a status")
    assert argocd_health(policy(status={}))[0] == "Progressing"
    # kstatus cannot tell a policy nobody has looked at from a healthy one.
    assert kstatus.compute(policy()).status == "Current"


def test_conditions_from_an_older_generation():
    obj = policy(generation=3, status={"phase": "Idle", "observedGeneration": 3, "conditions": idle_conditions(generation=2)})
    assert argocd_health(obj) == (
        "Progressing",
        "Waiting for the operator to observe generation 3 (condition Ready is for generation 2)",
    )
    # kstatus reads status.observedGeneration only.
    assert kstatus.compute(obj).status == "Current"


def test_no_generation_is_not_a_generation_mismatch():
    obj = policy(status={"phase": "Idle", "observedGeneration": 2, "conditions": idle_conditions()})
    del obj["metadata"]["generation"]
    assert argocd_health(obj)[0] == "Healthy"
    assert kstatus.compute(obj).status == "Current"


def test_a_failed_last_run_while_suspended_is_degraded():
    conditions = idle_conditions()
    conditions[0] = condition("Degraded", "True", "LastRunFailed", "garbage collection failed")
    conditions[2] = condition("Ready", "False", "LastRunFailed", "the last run failed")
    obj = policy(status={"phase": "Suspended", "observedGeneration": 2, "conditions": conditions})
    assert argocd_health(obj) == ("Degraded", "Suspended (LastRunFailed): garbage collection failed")
    assert kstatus.compute(obj).status == "InProgress"


def test_a_run_after_a_failed_run_is_progressing():
    # The Reconciling shape does not touch Degraded: it stays True from the failed run.
    conditions = [
        condition("Degraded", "True", "LastRunFailed", "garbage collection failed"),
        condition("Progressing", "True", "Sweeping"),
        condition("Ready", "False", "Sweeping"),
        condition("Reconciling", "True", "Sweeping"),
        condition("Stalled", "False", "Sweeping"),
    ]
    obj = policy(status={"phase": "Sweeping", "observedGeneration": 2, "conditions": conditions})
    assert argocd_health(obj) == (
        "Progressing",
        "Sweeping: a run is in progress; the last run failed: garbage collection failed",
    )
    assert kstatus.compute(obj).status == "InProgress"


def test_being_deleted():
    obj = policy(status={"phase": "Idle", "observedGeneration": 2, "conditions": idle_conditions()})
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert kstatus.compute(obj).status == "Terminating"


def test_lua_strings_survive_the_trip():
    text = 'quote " backslash \\ newline\n tab\t unicode … 2\u00e9 digits after escape \x01' + "123"
    run = subprocess.run([lua_binary(), "-"], input=f"io.write({lua_string(text)})".encode(), capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.decode("utf-8") == text
