"""The Helm chart, rendered by the real Helm v4 engine (helm-python-sdk), linted strictly, every
object validated offline against the Kubernetes schemas (kubernetes-validate), its security
settings asserted, and its RBAC compared with what the operator declares it uses
(`regsweep rbac`, which the end-to-end tests check every request against).

Run: `bash scripts/test.sh` (everything), or `python3 -m pytest tests/chart` after a cargo build.
"""

import json
import os
import subprocess
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "regsweep"
KUBERNETES_VERSION = "1.33"
RELEASE, NAMESPACE = "sweeper", "regsweep-system"

# Value sets a user would plausibly install with: each is rendered, linted and validated.
VALUE_SETS = {
    "default": {},
    "two-replicas": {"replicas": 2},
    "namespaced": {"watchNamespaces": ["registry", "team-b"]},
    "namespaced-in-use": {"watchNamespaces": ["registry"], "inUseNamespaces": ["apps", "registry"]},
    "cluster-in-use": {"inUseNamespaces": ["apps"]},
    "pinned-and-monitored": {
        "image": {"repository": "registry.example.com/regsweep", "digest": "sha256:" + "ab" * 32},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "leaderElection": {"enabled": True},
    },
    "bring-your-own-account": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "sweeper-sa"}},
    "no-metrics-service": {"metrics": {"service": {"enabled": False}}, "fullnameOverride": "rs"},
}


def regsweep(*args: str) -> str:
    """The operator binary cargo built (the test command builds it first)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "debug" / "regsweep"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--locked", "--quiet", "--bin", "regsweep"], cwd=ROOT, check=True)
    return subprocess.run([str(binary), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def chart():
    return helm_python.Chart.load(CHART)


def render(chart, values):
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects, out


def only(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def fullname(values):
    return values.get("fullnameOverride") or f"{RELEASE}-regsweep"


def leader_election(values):
    return values.get("replicas", 1) > 1 or values.get("leaderElection", {}).get("enabled", False)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lints_strictly(name):
    report = helm_python.lint(CHART, VALUE_SETS[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_is_valid_kubernetes(chart, name):
    objects, _ = render(chart, VALUE_SETS[name])
    assert objects
    for obj in objects:
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            # Not a built-in type: checked by hand below.
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"], obj["metadata"]


def test_the_crds_are_the_generated_file(chart):
    top = sorted(p.name for p in (ROOT / "crds").iterdir())
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == top
    for name in top:
        text = (CHART / "crds" / name).read_text()
        assert text == (ROOT / "crds" / name).read_text(), f"charts/regsweep/crds/{name} differs from crds/{name}: copy it"
        assert text == regsweep("crd"), "crds/ is not what `regsweep crd` prints: regenerate it"
        kubernetes_validate.validate(yaml.safe_load(text), KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_operator_runs_locked_down(chart, name):
    values = VALUE_SETS[name]
    objects, _ = render(chart, values)
    deploy = only(objects, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, container["resources"]
    port = container["ports"][0]
    assert port["name"] == "metrics" and port["containerPort"] >= 1024
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    expected_account = values.get("serviceAccount", {}).get("name") or fullname(values)
    assert pod["serviceAccountName"] == expected_account
    accounts = [o for o in objects if o["kind"] == "ServiceAccount"]
    if values.get("serviceAccount", {}).get("create", True):
        assert [a["metadata"]["name"] for a in accounts] == [expected_account]
    else:
        assert accounts == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_arguments_are_ones_the_operator_accepts(chart, name):
    values = VALUE_SETS[name]
    objects, _ = render(chart, values)
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "operator"
    help_text = regsweep("operator", "--help")
    for arg in args[1:]:
        flag = arg.split("=", 1)[0]
        assert f"{flag} " in help_text or f"{flag}\n" in help_text, f"`regsweep operator` has no {flag}"
    # The sweep Job's init container copies regsweep from the operator's own image.
    assert f"--image={container['image']}" in args
    if "digest" in values.get("image", {}):
        assert container["image"].endswith("@" + values["image"]["digest"])
    assert [a.split("=", 1)[1] for a in args if a.startswith("--watch-namespace=")] == values.get("watchNamespaces", [])
    assert [a.split("=", 1)[1] for a in args if a.startswith("--in-use-namespace=")] == values.get("inUseNamespaces", [])
    elected = leader_election(values)
    assert ("--leader-election" in args) == elected
    # Without a Lease, an upgrade must not run two operators at once.
    strategy = only(objects, "Deployment")["spec"]["strategy"]["type"]
    assert strategy == ("RollingUpdate" if elected else "Recreate")
    if elected:
        assert f"--lease-name={fullname(values)}" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def granted(objects):
    """Everything the rendered RBAC grants the operator's account: {(where, group, resource, verb)},
    where is "cluster" or a namespace; and the Lease rules' resourceNames."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o["kind"] in ("Role", "ClusterRole")}
    grants, lease_names = set(), []
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        ref = binding["roleRef"]
        where = binding["metadata"].get("namespace")
        role = roles.pop((ref["kind"], where if ref["kind"] == "Role" else None, ref["name"]))
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": binding["subjects"][0]["name"], "namespace": NAMESPACE}]
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            if "resourceNames" in rule:
                lease_names.append(rule["resourceNames"])
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add((where or "cluster", group, resource, verb))
    assert not roles, f"roles without a binding: {list(roles)}"
    return grants, lease_names


def declared(values):
    """What `regsweep rbac` says the operator uses, placed where these values run it."""
    watch = values.get("watchNamespaces") or ["cluster"]
    in_use = values.get("inUseNamespaces") or values.get("watchNamespaces") or ["cluster"]
    places = {"policies": watch, "inUse": in_use, "operator": [NAMESPACE] if leader_election(values) else []}
    needs = set()
    for permission in json.loads(regsweep("rbac", "--output", "json")):
        for where in places[permission["scope"]]:
            for verb in permission["verbs"]:
                needs.add((where, permission["apiGroup"], permission["resource"], verb))
    return needs


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if VALUE_SETS[n].get("rbac", {}).get("create", True)])
def test_the_rbac_grants_exactly_what_the_operator_uses(chart, name):
    values = VALUE_SETS[name]
    objects, _ = render(chart, values)
    grants, lease_names = granted(objects)
    needs = declared(values)
    assert needs - grants == set(), "the operator would be refused these"
    assert grants - needs == set(), "granted but never used"
    if leader_election(values):
        # get and update only on this installation's Lease (create cannot be limited by name).
        assert lease_names == [[fullname(values)]]
    else:
        assert lease_names == []


def test_without_rbac_nothing_is_granted(chart):
    objects, _ = render(chart, VALUE_SETS["bring-your-own-account"])
    assert not [o for o in objects if o["kind"].endswith("Role") or o["kind"].endswith("RoleBinding")]


def test_metrics_service_and_service_monitor(chart):
    objects, _ = render(chart, VALUE_SETS["pinned-and-monitored"])
    service = only(objects, "Service")
    deploy = only(objects, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = only(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}

    default, _ = render(chart, {})
    assert not [o for o in default if o["kind"] == "ServiceMonitor"], "off by default"
    none, _ = render(chart, VALUE_SETS["no-metrics-service"])
    assert not [o for o in none if o["kind"] == "Service"]


def test_a_service_monitor_without_its_service_is_refused(chart):
    with pytest.raises(helm_python.HelmRenderError, match="metrics.service.enabled"):
        render(chart, {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}})


@pytest.mark.parametrize(
    "values, says",
    [
        ({"replicas": "two"}, "/replicas"),
        ({"watchNamespaces": ["Team_B"]}, "/watchNamespaces/0"),
        ({"image": {"repository": "r", "digest": "latest"}}, "/image/digest"),
        ({"pollSecond": 5}, "pollSecond"),
        ({"metrics": {"port": 80}}, "/metrics/port"),
        ({"logFormat": "xml"}, "/logFormat"),
    ],
)
def test_bad_values_are_refused_with_the_path(chart, values, says):
    with pytest.raises(helm_python.HelmValuesError, match=says):
        render(chart, values)


def test_notes_say_what_to_do_next(chart):
    _, out = render(chart, {"watchNamespaces": ["registry"]})
    notes = next(text for path, text in out.items() if path.endswith("NOTES.txt"))
    assert f"rollout status deployment/{RELEASE}-regsweep" in notes
    assert "kubectl get rcp -A -w" in notes
    assert "dryRun: true" in notes
    assert "in: registry" in notes
    assert "DELETE_ENABLED" not in notes, "the public registry needs no delete API"
