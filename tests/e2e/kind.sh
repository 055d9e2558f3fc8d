#!/usr/bin/env bash
# The operator's end-to-end scenario on a real cluster (kind), the same as
# tests/operator_e2e.rs runs against the in-process API server, with the real image (the
# Dockerfile) installed by the real chart (charts/regsweep) with its least-privilege RBAC.
# Not run in CI here (no container engine); run it on a machine with docker, kind, helm,
# kubectl and skopeo:
#
#   bash tests/e2e/kind.sh            # creates cluster "regsweep-e2e", runs, deletes it
#   KEEP=1 bash tests/e2e/kind.sh     # keeps the cluster for a look around
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=${CLUSTER:-regsweep-e2e}
IMAGE=regsweep:e2e
for tool in docker kind helm kubectl skopeo cargo; do
  command -v "$tool" >/dev/null || { echo "kind.sh needs $tool" >&2; exit 2; }
done
cleanup() { [ -n "${KEEP:-}" ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; kill "${PF:-0}" 2>/dev/null || true; }
trap cleanup EXIT

docker build -t "$IMAGE" .
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
echo "image size: $((size / 1024 / 1024)) MiB (goal: under 30)"

kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image --name "$CLUSTER" "$IMAGE"
kubectl create namespace registry
kubectl -n registry apply -f - <<'YAML'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: registry-data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: docker-registry}
spec:
  replicas: 1
  selector: {matchLabels: {app: registry}}
  template:
    metadata: {labels: {app: registry}}
    spec:
      containers:
        - name: registry
          image: registry:2
          env: [{name: REGISTRY_HTTP_SECRET, value: e2e}]
          ports: [{containerPort: 5000}]
          volumeMounts: [{name: data, mountPath: /var/lib/registry}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: registry-data}}]
---
apiVersion: v1
kind: Service
metadata: {name: docker-registry}
spec: {selector: {app: registry}, ports: [{port: 5000}]}
YAML
kubectl -n registry rollout status deploy/docker-registry --timeout=180s

# Fill it from the host through a port-forward, with a real client.
kubectl -n registry port-forward svc/docker-registry 5555:5000 >/dev/null 2>&1 & PF=$!
sleep 3
# Distinct images: a tag sharing its digest with the kept tag would (rightly) be kept too.
for pair in old-1:1.34 old-2:1.35 old-3:1.36 keep:1.37; do
  skopeo copy --dest-tls-verify=false "docker://docker.io/library/busybox:${pair#*:}" "docker://127.0.0.1:5555/team-a/app:${pair%%:*}" >/dev/null
done

# The operator, from the chart (CRD, least-privilege RBAC, two replicas behind a Lease).
helm install regsweep charts/regsweep -n regsweep-system --create-namespace \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set replicaCount=2 --wait --timeout 180s
kubectl -n regsweep-system rollout status deploy/regsweep --timeout=120s

kubectl apply -f - <<'YAML'
apiVersion: regsweep.dev/v1alpha1
kind: RegistryCleanupPolicy
metadata: {name: e2e, namespace: registry}
spec:
  registry:
    deployment: docker-registry
    url: http://docker-registry.registry.svc:5000
    hosts: ["docker-registry.registry.svc:5000"]
  rules:
    - repositories: ["team-a/*"]
      keepTags: ["keep"]
      keepLatest: 0
  limits: {maxDeletedTags: 10}
  approval: Manual
  quarantine: {keepFor: 1d}
YAML
# The review run plans without freezing, then the plan waits for its approval.
for _ in $(seq 120); do
  phase=$(kubectl -n registry get rcp e2e -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [ "$phase" = "AwaitingApproval" ] && break
  sleep 2
done
[ "$phase" = "AwaitingApproval" ] || { kubectl -n registry describe rcp e2e; exit 1; }
if kubectl -n registry get deploy docker-registry -o yaml | grep -q REGISTRY_STORAGE_MAINTENANCE_READONLY; then
  echo "the registry was frozen before the plan was approved" >&2; exit 1
fi
plan=$(kubectl -n registry get rcp e2e -o jsonpath='{.status.pendingPlan.id}')
kubectl -n registry get rcp e2e -o jsonpath='{.status.pendingPlan}'; echo
kubectl -n registry annotate rcp e2e "regsweep.dev/approve-plan=$plan" --overwrite
for _ in $(seq 120); do
  result=$(kubectl -n registry get rcp e2e -o jsonpath='{.status.lastRun.result}' 2>/dev/null || true)
  review=$(kubectl -n registry get rcp e2e -o jsonpath='{.status.lastRun.review}' 2>/dev/null || true)
  [ -n "$result" ] && [ "$review" = "false" ] && break
  sleep 2
done
[ "$(kubectl -n registry get rcp e2e -o jsonpath='{.status.lastRun.planId}')" = "$plan" ] || { echo "the approved plan did not run" >&2; exit 1; }
kubectl -n registry get rcp e2e
[ "$result" = "Succeeded" ] || { kubectl -n registry describe rcp e2e; exit 1; }
kubectl -n registry rollout status deploy/docker-registry --timeout=120s
# The thaw replaced the registry pod: forward to the new one.
kill "$PF" 2>/dev/null || true
kubectl -n registry port-forward svc/docker-registry 5555:5000 >/dev/null 2>&1 & PF=$!
sleep 3
tags=$(curl -s http://127.0.0.1:5555/v2/team-a/app/tags/list)
echo "$tags"
case "$tags" in *old-1*) echo "old-1 should be gone" >&2; exit 1;; esac
cargo run --release --locked -q -- verify --url http://127.0.0.1:5555
# Undo: the run's deletions are restorable through the registry's API, no freeze needed.
run=$(kubectl -n registry get rcp e2e -o jsonpath='{.status.lastRun.id}')
[ -n "$(kubectl -n registry get rcp e2e -o jsonpath='{.status.lastRun.quarantinedUntil}')" ] || { echo "no quarantine expiry in the status" >&2; exit 1; }
cargo run --release --locked -q -- quarantine list --url http://127.0.0.1:5555
cargo run --release --locked -q -- restore --url http://127.0.0.1:5555 --run "$run"
tags=$(curl -s http://127.0.0.1:5555/v2/team-a/app/tags/list)
case "$tags" in *old-1*) ;; *) echo "old-1 should be back: $tags" >&2; exit 1;; esac
cargo run --release --locked -q -- verify --url http://127.0.0.1:5555
echo "kind e2e: passed"
