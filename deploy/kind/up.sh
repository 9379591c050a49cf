#!/usr/bin/env bash
# Try the operator on a kind cluster (needs Docker, kind, kubectl and helm on PATH):
#
#   deploy/kind/up.sh            # create the cluster, build + load the image, install, apply examples
#   deploy/kind/up.sh --down     # delete the cluster
#
# Environment: CLUSTER_NAME (default eventpipeline), IMAGE (default
# eventpipeline-operator:dev), NAMESPACE (default eventpipeline-system), EXAMPLES=0 to skip
# applying examples/ (the brokers in examples/brokers/ must point at a Kafka and an Airflow you
# run: edit their addresses and admin Secrets first).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
cluster="${CLUSTER_NAME:-eventpipeline}"
image="${IMAGE:-eventpipeline-operator:dev}"
namespace="${NAMESPACE:-eventpipeline-system}"
examples="${EXAMPLES:-1}"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: $1 is not on PATH; install it first ($2)" >&2
    exit 1
  fi
}

if [[ "${1:-}" == "--down" ]]; then
  need kind "https://kind.sigs.k8s.io"
  kind delete cluster --name "${cluster}"
  exit 0
fi

need docker "a running Docker engine"
need kind "https://kind.sigs.k8s.io"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"

if ! kind get clusters | grep -qx "${cluster}"; then
  kind create cluster --name "${cluster}" --config "${here}/kind-config.yaml" --wait 120s
fi
context="kind-${cluster}"

echo "building ${image}" >&2
docker build --tag "${image}" "${repo}"
kind load docker-image "${image}" --name "${cluster}"

repository="${image%:*}"
tag="${image##*:}"
helm upgrade --install eventpipeline "${repo}/charts/eventpipeline-operator" \
  --kube-context "${context}" \
  --namespace "${namespace}" --create-namespace \
  --set image.repository="${repository}" \
  --set image.tag="${tag}" \
  --set image.pullPolicy=Never \
  --wait --timeout 5m

kubectl --context "${context}" -n "${namespace}" rollout status deployment/eventpipeline-eventpipeline-operator-controller

if [[ "${examples}" == "1" ]]; then
  kubectl --context "${context}" create namespace shop --dry-run=client -o yaml |
    kubectl --context "${context}" apply -f -
  kubectl --context "${context}" apply -f "${repo}/examples/brokers/"
  # The example pipeline names the local stack's broker and Airflow; here they are the ones
  # examples/brokers/ describes (kafka-main, main).
  sed -e 's/name: local-kafka$/name: kafka-main/' -e 's/^\(      name:\) local$/\1 main/' \
    "${repo}/examples/kafka-pipeline.yaml" | kubectl --context "${context}" -n shop apply -f -
  echo "watch the pipeline become Ready:  kubectl --context ${context} -n shop get eventpipelines -w" >&2
fi
