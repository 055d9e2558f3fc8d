"""The Helm chart, rendered by the real Helm v4 engine (helm-python-sdk), linted strictly, every
object validated offline against the Kubernetes schemas (kubernetes-validate), its security
settings asserted, and its RBAC compared with what the operator declares it uses
(`regsweep rbac`, which the end-to-end tests check every request against). Also: the values
the chart offers (replicaCount and its PodDisruptionBudget, the NetworkPolicy, the user roles
aggregated into view/edit/admin, commonLabels, extra args/volumes, spread constraints, the
service account token), the CRD upgrade design (charts/regsweep/README.md) and NOTES.txt.

Run: `bash scripts/test.sh` (everything), or `python3 -m pytest tests/chart` after a cargo build.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from promql import OPERATOR_METRICS, metric_names  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "regsweep"
KUBERNETES_VERSION = "1.33"
RELEASE, NAMESPACE = "sweeper", "regsweep-system"

# Value sets a user would plausibly install with: each is rendered, linted and validated.
VALUE_SETS = {
    "default": {},
    "two-replicas": {"replicaCount": 2},
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
    # Everything a hardened cluster asks for, at once.
    "hardened": {
        "replicaCount": 2,
        "revisionHistoryLimit": 3,
        "commonLabels": {"team": "platform", "cost-center": "cc-42"},
        "serviceAccount": {"automount": False},
        "networkPolicy": {
            "enabled": True,
            "egress": [
                {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}], "ports": [{"port": 443, "protocol": "TCP"}]},
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "registry"}}}], "ports": [{"port": 5000, "protocol": "TCP"}]},
            ],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        },
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "regsweep"}}},
        ],
        "extraArgs": ["--log-format=text", "--identity=sweeper"],
        "extraVolumes": [{"name": "registry-ca", "configMap": {"name": "registry-ca"}}],
        "extraVolumeMounts": [{"name": "registry-ca", "mountPath": "/etc/ssl/registry", "readOnly": True}],
        "podLabels": {"cost-center": "cc-7"},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"team": "observability"}}},
    },
    "network-policy-defaults": {"networkPolicy": {"enabled": True}},
    "no-user-roles": {"rbac": {"aggregateToDefaultRoles": False}},
    # The alerts and the Grafana dashboard, with a custom sidecar label in Grafana's namespace.
    "alerts-and-dashboard": {
        "commonLabels": {"team": "platform"},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "additionalLabels": {"team": "registry-owners"}},
            "dashboard": {"enabled": True, "label": "grafana.example.com/dashboard", "labelValue": "yes", "namespace": "monitoring", "annotations": {"grafana_folder": "Registries"}},
        },
    },
}

USER_ROLES = "user-roles"


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
    return values.get("replicaCount", 1) > 1 or values.get("leaderElection", {}).get("enabled", False)


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
    # The aggregated user roles are not the operator's: nothing binds them to its account.
    objects = [o for o in objects if o["metadata"]["labels"].get("app.kubernetes.io/component") != USER_ROLES]
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
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"replicaCount": 3}, "/replicaCount"),
        # The old name is gone (not silently ignored).
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"revisionHistoryLimit": -1}, "/revisionHistoryLimit"),
        ({"commonLabels": {"team": 1}}, "/commonLabels/team"),
        ({"extraArgs": "--log-format=text"}, "/extraArgs"),
        ({"extraVolumeMounts": [{"name": "ca"}]}, "/extraVolumeMounts/0"),
        ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Never"}]}, "/topologySpreadConstraints/0/whenUnsatisfiable"),
        ({"serviceAccount": {"automount": "yes"}}, "/serviceAccount/automount"),
        ({"rbac": {"aggregateToDefaultRoles": "yes"}}, "/rbac/aggregateToDefaultRoles"),
        ({"networkPolicy": {"enabled": True, "ingress": []}}, "additional properties 'ingress' not allowed"),
        ({"networkPolicy": {"egress": [{"ports": [], "from": []}]}}, "/networkPolicy/egress/0"),
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


def notes(chart, values):
    _, out = render(chart, values)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def test_notes_say_what_to_do_next(chart):
    text = notes(chart, {"watchNamespaces": ["registry"]})
    assert f"rollout status deployment/{RELEASE}-regsweep" in text
    assert "kubectl get rcp -A -w" in text
    assert "dryRun: true" in text
    assert "in: registry" in text
    assert "DELETE_ENABLED" not in text, "the public registry needs no delete API"


def crd_schema():
    crd = yaml.safe_load((CHART / "crds" / "registrycleanuppolicies.regsweep.dev.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return version["schema"]["openAPIV3Schema"]


def test_the_notes_sample_policy_is_a_safe_complete_dry_run(chart):
    text = notes(chart, {})
    start = text.index("     apiVersion: regsweep.dev/")
    block = textwrap.dedent(text[start : text.index("\n\n", start)])
    policy = yaml.safe_load(block)
    # A real policy: what the CRD's schema accepts (placeholders are strings).
    jsonschema.validate(policy, crd_schema())
    assert policy["kind"] == "RegistryCleanupPolicy"
    registry = policy["spec"]["registry"]
    assert registry["deployment"] and registry["url"].startswith("http")
    # Without hosts, in-use protection matches nothing.
    assert registry["hosts"] and all(h for h in registry["hosts"])
    assert policy["spec"]["dryRun"] is True
    # No schedule: it runs once, now, and the reader sees the result at once.
    assert "schedule" not in policy["spec"]
    assert "runs once, now" in text
    # What to watch, and that a dry run never freezes the registry.
    assert "never freezes" in text
    assert "status.lastRun" in text
    assert f"describe rcp {policy['metadata']['name']}" in text


@pytest.mark.parametrize("name", VALUE_SETS)
def test_replicas_and_the_disruption_budget(chart, name):
    values = VALUE_SETS[name]
    objects, _ = render(chart, values)
    deploy = only(objects, "Deployment")
    count = values.get("replicaCount", 1)
    assert deploy["spec"]["replicas"] == count
    assert deploy["spec"]["revisionHistoryLimit"] == values.get("revisionHistoryLimit", 10)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    if count < 2:
        assert budgets == [], "a budget on a single replica blocks every drain"
        return
    (pdb,) = budgets
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_network_policy(chart):
    default, _ = render(chart, {})
    assert not [o for o in default if o["kind"] == "NetworkPolicy"], "off by default"

    objects, _ = render(chart, VALUE_SETS["network-policy-defaults"])
    policy = only(objects, "NetworkPolicy")
    deploy = only(objects, "Deployment")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    # Metrics (and the probes) on the metrics port, from anyone by default.
    assert spec["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] == "metrics"
    dns, *rest = spec["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    # The API server (443 via the kubernetes Service, 6443 behind it) and registries (443, 5000).
    assert rest == [{"ports": [{"port": p, "protocol": "TCP"} for p in (443, 6443, 5000)]}]

    values = VALUE_SETS["hardened"]["networkPolicy"]
    objects, _ = render(chart, VALUE_SETS["hardened"])
    spec = only(objects, "NetworkPolicy")["spec"]
    assert spec["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}], "from": values["metricsFrom"]}]
    assert spec["egress"][0] == dns, "DNS stays allowed whatever the egress rules"
    assert spec["egress"][1:] == values["egress"]


def user_roles(objects):
    return {o["metadata"]["name"]: o for o in objects if o["metadata"]["labels"].get("app.kubernetes.io/component") == USER_ROLES}


def test_users_get_policies_through_the_default_roles(chart):
    objects, _ = render(chart, {})
    roles = user_roles(objects)
    assert set(roles) == {f"{RELEASE}-regsweep-view", f"{RELEASE}-regsweep-edit"}
    view, edit = roles[f"{RELEASE}-regsweep-view"], roles[f"{RELEASE}-regsweep-edit"]
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k in view["metadata"]["labels"] if k.startswith(aggregate)} == {aggregate + "view"}
    assert {k for k in edit["metadata"]["labels"] if k.startswith(aggregate)} == {aggregate + "edit", aggregate + "admin"}
    for role in (view, edit):
        assert role["kind"] == "ClusterRole"
        assert all(v == "true" for k, v in role["metadata"]["labels"].items() if k.startswith(aggregate))
        assert all(rule["apiGroups"] == ["regsweep.dev"] for rule in role["rules"])
        assert "aggregationRule" not in role

    def verbs(role, resource):
        return {v for rule in role["rules"] if resource in rule["resources"] for v in rule["verbs"]}

    assert verbs(view, "registrycleanuppolicies") == {"get", "list", "watch"}
    assert verbs(view, "registrycleanuppolicies/status") == {"get", "list", "watch"}
    assert verbs(edit, "registrycleanuppolicies") == {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
    assert verbs(edit, "registrycleanuppolicies/status") == set(), "status is the operator's to write"
    # Nothing binds them: the API server aggregates them into view/edit/admin.
    bound = {o["roleRef"]["name"] for o in objects if o["kind"].endswith("RoleBinding")}
    assert not bound & set(roles)
    # No operator role carries an aggregation label.
    for o in objects:
        if o["kind"] in ("Role", "ClusterRole") and o["metadata"]["name"] not in roles:
            assert not any(k.startswith(aggregate) for k in o["metadata"]["labels"])

    for values in (VALUE_SETS["no-user-roles"], VALUE_SETS["bring-your-own-account"]):
        objects, _ = render(chart, values)
        assert user_roles(objects) == {}


@pytest.mark.parametrize("name", ["default", "hardened", "namespaced-in-use"])
def test_common_labels_are_on_every_object(chart, name):
    values = VALUE_SETS[name]
    common = values.get("commonLabels", {})
    objects, _ = render(chart, values)
    for obj in objects:
        labels = obj["metadata"]["labels"]
        # An object's own labels (here the ServiceMonitor's) win over commonLabels.
        own = values.get("metrics", {}).get("serviceMonitor", {}).get("labels", {}) if obj["kind"] == "ServiceMonitor" else {}
        assert {k: v for k, v in common.items() if k not in own}.items() <= labels.items(), obj["metadata"]
        # The chart's own labels are never overridden.
        assert labels["app.kubernetes.io/name"] == "regsweep"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    deploy = only(objects, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert {k: v for k, v in common.items() if k not in values.get("podLabels", {})}.items() <= pod_labels.items()
    assert values.get("podLabels", {}).items() <= pod_labels.items(), "podLabels win over commonLabels"
    # The selector (immutable) never takes them.
    assert deploy["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "regsweep", "app.kubernetes.io/instance": RELEASE}
    if name == "hardened":
        monitor = only(objects, "ServiceMonitor")
        assert monitor["metadata"]["labels"]["team"] == "observability", "the ServiceMonitor's own labels win"


def test_common_labels_cannot_take_over_the_chart_labels(chart):
    objects, _ = render(chart, {"commonLabels": {"app.kubernetes.io/name": "other", "app.kubernetes.io/component": "x"}})
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "regsweep"
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] in ("operator", USER_ROLES)


def test_extra_args_volumes_and_spread(chart):
    values = VALUE_SETS["hardened"]
    objects, _ = render(chart, values)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # After the chart's own, in order (a repeated flag given last wins).
    assert container["args"][-len(values["extraArgs"]) :] == values["extraArgs"]
    assert container["args"][0] == "operator"
    assert {"name": "registry-ca", "configMap": {"name": "registry-ca"}} in pod["volumes"]
    assert {"name": "registry-ca", "mountPath": "/etc/ssl/registry", "readOnly": True} in container["volumeMounts"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    zone, host = pod["topologySpreadConstraints"]
    selector = {"app.kubernetes.io/name": "regsweep", "app.kubernetes.io/instance": RELEASE}
    assert zone == {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}
    assert host == values["topologySpreadConstraints"][1], "a labelSelector given is kept as it is"

    default, _ = render(chart, {})
    pod = only(default, "Deployment")["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]
    assert "topologySpreadConstraints" not in pod


TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def test_the_service_account_token(chart):
    objects, _ = render(chart, {})
    assert only(objects, "ServiceAccount")["automountServiceAccountToken"] is True
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True

    # Hardened: no token for whatever else runs as this account; the operator mounts its own.
    objects, _ = render(chart, VALUE_SETS["hardened"])
    assert only(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == TOKEN_PATH]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert sources[2]["downwardAPI"]["items"] == [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]

    # An account the chart does not create: the pod still says what it wants.
    objects, _ = render(chart, {"serviceAccount": {"create": False, "name": "sa", "automount": False}})
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert any(m["mountPath"] == TOKEN_PATH for m in pod["containers"][0]["volumeMounts"])


EMPTY_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"


def test_crd_upgrades_are_the_documented_kubectl_apply(chart):
    """The design (charts/regsweep/README.md, "Upgrading the CRD"): the CRD stays in crds/ (the
    generated file), so Helm creates it on install and never changes or deletes it; upgrades are
    `kubectl apply --server-side` of the new chart's crds/ before `helm upgrade`. No template
    renders it as well: two owners of one object make `helm install` fail."""
    name = "registrycleanuppolicies.regsweep.dev.yaml"
    text = (CHART / "crds" / name).read_text()
    # Helm's own loader: the CRD is one of the chart's crds/ objects, as it is on disk.
    assert [(c["filename"], c["data"]) for c in chart.crds] == [(f"regsweep/crds/{name}", text)]
    crd = yaml.safe_load(text)
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {}), "crds/ is never deleted anyway"
    # No value set renders a CRD from the templates.
    for values in VALUE_SETS.values():
        objects, _ = render(chart, values)
        assert not [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    # The release's manifest, what `helm upgrade` compares and applies, has no CRD (a client-side
    # dry-run install through the Helm SDK: no cluster needed).
    config = helm_python.Config(storage_driver="memory", namespace=NAMESPACE, kubeconfig_content=EMPTY_KUBECONFIG)
    release = config.install(chart, RELEASE, {}, namespace=NAMESPACE, dry_run="client")
    kinds = {doc["kind"] for doc in yaml.safe_load_all(release["manifest"]) if doc}
    assert "Deployment" in kinds and "CustomResourceDefinition" not in kinds
    # No pretend toggle: crds.enabled/crds.keep would do nothing with crds/, so they are refused.
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'crds' not allowed"):
        render(chart, {"crds": {"enabled": True}})
    # The README gives the upgrade commands, for a chart directory and for a packaged chart.
    readme = (CHART / "README.md").read_text()
    assert "kubectl apply --server-side --force-conflicts -f charts/regsweep/crds/" in readme
    assert re.search(r"helm show crds \S+ .*\| kubectl apply --server-side --force-conflicts -f -", readme)


ALERT_NAMES = ["RegsweepRunFailed", "RegsweepRegistryFrozenTooLong", "RegsweepNoRecentSuccess", "RegsweepOperatorDown", "RegsweepReconcileErrors"]


# The PrometheusRule's CRD (monitoring.coreos.com/v1, prometheus-operator) is not in the offline
# schemas: its spec as the CRD describes it, the parts this chart uses, strictly.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["groups"],
    "properties": {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "rules"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "rules": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["alert", "expr", "for", "labels", "annotations"],
                            "properties": {
                                "alert": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                                "expr": {"type": "string", "minLength": 1},
                                "for": {"type": "string", "pattern": DURATION},
                                "labels": STRING_MAP,
                                "annotations": STRING_MAP,
                            },
                        },
                    },
                },
            },
        }
    },
}


def prometheus_rules(objects):
    return [o for o in objects if o["kind"] == "PrometheusRule"]


def dashboards(objects):
    return [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]


def test_alerts_and_dashboard_are_off_by_default(chart):
    for name in ("default", "pinned-and-monitored", "hardened"):
        objects, _ = render(chart, VALUE_SETS[name])
        assert prometheus_rules(objects) == [] and dashboards(objects) == [], name
        assert not [o for o in objects if o["kind"] == "ConfigMap"], name


def test_the_prometheus_rule(chart):
    values = VALUE_SETS["alerts-and-dashboard"]
    objects, _ = render(chart, values)
    rule = only(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["name"] == fullname(values) and rule["metadata"]["namespace"] == NAMESPACE
    labels = rule["metadata"]["labels"]
    assert labels["release"] == "prometheus", "metrics.prometheusRule.labels, for the ruleSelector"
    assert labels["team"] == "platform" and labels["app.kubernetes.io/instance"] == RELEASE
    jsonschema.validate(rule["spec"], PROMETHEUS_RULE_SPEC)

    # The groups are files/alerts.yaml's: the same alerts, expressions, durations, annotations.
    source = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    rendered = rule["spec"]["groups"]
    assert [g["name"] for g in rendered] == [g["name"] for g in source["groups"]]
    service = only(objects, "Service")["metadata"]["name"]
    selector = f'job="{service}", namespace="{NAMESPACE}"'
    for group, original in zip(rendered, source["groups"]):
        assert [r["alert"] for r in group["rules"]] == [r["alert"] for r in original["rules"]]
        for got, want in zip(group["rules"], original["rules"]):
            assert got["expr"] == want["expr"].replace('job=~".*regsweep.*"', selector), got["alert"]
            assert got["for"] == want["for"] and got["annotations"] == want["annotations"]
            # additionalLabels on every alert; an alert's own severity wins.
            assert got["labels"] == {**values["metrics"]["prometheusRule"]["additionalLabels"], **want["labels"]}
            for expr_name in metric_names(got["expr"]):
                assert expr_name in OPERATOR_METRICS | {"up"}, (got["alert"], expr_name)
    assert {r["alert"] for g in rendered for r in g["rules"]} == set(ALERT_NAMES)
    (down,) = [r for g in rendered for r in g["rules"] if r["alert"] == "RegsweepOperatorDown"]
    # The operator-down selector is this release's metrics Service (the ServiceMonitor's job label).
    assert down["expr"] == f"up{{{selector}}} == 0\nor\nabsent(up{{{selector}}})\n"
    assert service == f"{fullname(values)}-metrics"
    # The alert templates reach Prometheus as they are (Helm does not expand them).
    assert all("{{ $labels.namespace }}" in r["annotations"]["summary"] for g in rendered for r in g["rules"] if r["alert"] == "RegsweepRunFailed")


def test_the_prometheus_rule_selector_and_disabled_alerts(chart):
    objects, _ = render(chart, {"metrics": {"prometheusRule": {"enabled": True, "operatorSelector": 'job="regsweep"', "disabledAlerts": ["RegsweepReconcileErrors"]}}})
    rule = only(objects, "PrometheusRule")
    jsonschema.validate(rule["spec"], PROMETHEUS_RULE_SPEC)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == set(ALERT_NAMES) - {"RegsweepReconcileErrors"}
    assert alerts["RegsweepOperatorDown"]["expr"] == 'up{job="regsweep"} == 0\nor\nabsent(up{job="regsweep"})\n'
    # Without the metrics Service there is no job name to default to.
    with pytest.raises(helm_python.HelmRenderError, match="operatorSelector"):
        render(chart, {"metrics": {"service": {"enabled": False}, "prometheusRule": {"enabled": True}}})
    objects, _ = render(chart, {"metrics": {"service": {"enabled": False}, "prometheusRule": {"enabled": True, "operatorSelector": 'job="regsweep"'}}})
    assert prometheus_rules(objects)


def test_the_dashboard_config_map(chart):
    values = VALUE_SETS["alerts-and-dashboard"]
    objects, _ = render(chart, values)
    (config_map,) = dashboards(objects)
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)
    assert config_map["metadata"]["namespace"] == "monitoring"
    labels = config_map["metadata"]["labels"]
    assert labels["grafana.example.com/dashboard"] == "yes" and "grafana_dashboard" not in labels
    assert labels["team"] == "platform" and labels["app.kubernetes.io/name"] == "regsweep"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Registries"}
    (key,) = config_map["data"]
    assert key.endswith(".json")
    assert json.loads(config_map["data"][key]) == json.loads((CHART / "files" / "dashboard.json").read_text())

    # The defaults: the sidecar's usual label, in the release's namespace.
    objects, _ = render(chart, {"metrics": {"dashboard": {"enabled": True}}})
    (config_map,) = dashboards(objects)
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert "annotations" not in config_map["metadata"]
    assert prometheus_rules(objects) == [], "each is enabled on its own"


def dashboard_queries(dashboard):
    """Every PromQL query of a Grafana dashboard: the panels' targets (rows' nested panels too)
    and the template variables' label_values() metrics."""
    queries = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        queries += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
            assert m, query
            queries.append((variable["name"], m.group(1)))
    return queries


def test_the_dashboard_uses_only_the_operators_metrics():
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and "id" not in dashboard
    assert [v["name"] for v in dashboard["templating"]["list"]][0] == "datasource"
    queries = dashboard_queries(dashboard)
    used = set()
    for title, expr in queries:
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= OPERATOR_METRICS, f"{title}: {names - OPERATOR_METRICS} is no metric of the operator"
        used |= names
    # What the dashboard is for: runs by result, bytes reclaimed, read-only time, failures, frozen now.
    assert {"regsweep_runs_total", "regsweep_reclaimed_bytes_total", "regsweep_read_only_seconds_total", "regsweep_last_run_succeeded", "regsweep_registry_frozen"} <= used
    titles = {title for title, _ in queries}
    assert {"Runs by result", "Bytes reclaimed", "Read-only time", "Registries frozen now", "Failed runs by policy"} <= titles
    # Every panel asks the dashboard's data source variable.
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # The metric-name reader itself finds selectors, not functions or labels.
    assert metric_names('sum by (result) (increase(regsweep_runs_total{policy=~"$policy"}[$__rate_interval])) or vector(0)') == {"regsweep_runs_total"}


@pytest.mark.parametrize(
    "values, says",
    [
        ({"metrics": {"prometheusRule": {"enabled": "yes"}}}, "/metrics/prometheusRule/enabled"),
        ({"metrics": {"prometheusRule": {"disabledAlerts": ["RegsweepNope"]}}}, "/metrics/prometheusRule/disabledAlerts/0"),
        ({"metrics": {"prometheusRule": {"additionalLabels": {"page": True}}}}, "/metrics/prometheusRule/additionalLabels/page"),
        ({"metrics": {"prometheusRule": {"rules": []}}}, "additional properties 'rules' not allowed"),
        ({"metrics": {"dashboard": {"labelValue": 1}}}, "/metrics/dashboard/labelValue"),
        ({"metrics": {"dashboard": {"label": ""}}}, "/metrics/dashboard/label"),
        ({"metrics": {"dashboard": {"namespace": "Monitoring"}}}, "/metrics/dashboard/namespace"),
    ],
)
def test_bad_alert_and_dashboard_values_are_refused(chart, values, says):
    with pytest.raises(helm_python.HelmValuesError, match=says):
        render(chart, values)
