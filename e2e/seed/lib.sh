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
