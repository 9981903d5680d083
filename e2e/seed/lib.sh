# shellcheck shell=bash
# Shared helpers for the local seed scripts. Sourced, never run.

HP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../versions.env
source "$HP_ROOT/e2e/versions.env"

# Expensive, reusable artefacts (built binaries, images), keyed by version below this folder.
HP_CACHE=${HOSTPLANE_CACHE:-/var/cache/hostplane}
# Everything a running seed owns: pids, config, PKI, data, logs. Short path: unix sockets live here.
HP_STATE=${HOSTPLANE_SEED_DIR:-/var/lib/hostplane-seed}
# The operator's image repository (charts/hostplane/values.yaml names the same).
OPERATOR_IMAGE=ghcr.io/hostplane/hostplane-operator

hp_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
hp_die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# k8s_bin_dir VERSION -> folder with the static Kubernetes binaries of that version.
k8s_bin_dir() { echo "$HP_CACHE/kubernetes/v$1/bin"; }
etcd_bin_dir() { echo "$HP_CACHE/etcd/v$ETCD_VERSION/bin"; }
coredns_bin_dir() { echo "$HP_CACHE/coredns/v$COREDNS_VERSION/bin"; }
helm_bin_dir() { echo "$HP_CACHE/helm/v$HELM_VERSION/bin"; }
gofakes3_bin_dir() { echo "$HP_CACHE/gofakes3/v$GOFAKES3_VERSION/bin"; }
# flux_dir -> folder with source-controller, kustomize-controller and crds/ (their CRDs).
flux_dir() { echo "$HP_CACHE/flux/v$FLUX_VERSION"; }
# sveltos_crd -> the SveltosCluster CRD of libsveltos, as published in its Go module.
sveltos_crd() { echo "$HP_CACHE/sveltos/v$LIBSVELTOS_VERSION/lib.projectsveltos.io_sveltosclusters.yaml"; }

# operator_leader: the name of the operator pod that holds its Lease, waiting up to 60 s (a fresh
# install hands the Lease over within its 15 s term). Fails when none does.
operator_leader() {
  local i holder
  for ((i = 0; i < 30; i++)); do
    holder=$(kubectl -n hostplane-system get lease hostplane-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
    if [[ -n $holder ]] && kubectl -n hostplane-system get pod "$holder" >/dev/null 2>&1; then
      echo "$holder"
      return 0
    fi
    sleep 2
  done
  hp_log "no operator holds the Lease: install it first (make up)"
  return 1
}
