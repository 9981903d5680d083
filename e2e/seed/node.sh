# shellcheck shell=bash
# Worker nodes of the local seed, joined to a tenant (sourced by e2e/seed/seed):
#   seed node add NAME --join FILE [--version V]
#                                    FILE: a bootstrap kubeconfig (the `bootstrap-kubeconfig` key of
#                                    a <tcp>-join Secret), or `SECRET@NAMESPACE` to read it from the seed;
#                                    V: the kubelet's version, one of KUBERNETES_VERSIONS (default
#                                    KUBERNETES_VERSION)
#   seed node rm NAME                stop it and remove every trace (the Node object stays in the tenant)
#   seed node ls                     the nodes and their addresses
# A node is a network namespace `hpn-NAME` behind a veth pair (198.18.<slot>.2, the host side
# .1), with its own containerd (own root, state, socket, CNI bridge, runc root) and kubelet
# (cgroupRoot /hostplane-node-NAME), both started with `nsenter --net` (`ip netns exec` would
# remount /sys and hide the cgroups). The kubelet holds nothing but the bootstrap credential: it
# gets its client certificate by TLS bootstrap and rotates it. Pods get 10.244.<slot>.0/24.

NODES=$HP_STATE/nodes
NODE_NAME_RE='^[a-z][a-z0-9-]{0,11}$'

node_dir() { echo "$NODES/$1"; }
node_netns() { echo "hpn-$1"; }
node_cgroup() { echo "hostplane-node-$1"; }
node_slot() { cat "$(node_dir "$1")/slot"; }
node_sock() { echo "$(node_dir "$1")/containerd/containerd.sock"; }
node_names() { [[ -d $NODES ]] && find "$NODES" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort; }

free_slot() {
  local used s
  used=$(cat "$NODES"/*/slot 2>/dev/null || true)
  for s in $(seq 1 200); do grep -qx "$s" <<<"$used" || { echo "$s"; return; }; done
  hp_die "no free node slot"
}

start_in_netns() { # start_in_netns NAME NETNS BINARY ARGS...: a daemon inside a network namespace
  local name=$1 netns=$2 bin=$3; shift 3
  # nsenter without --fork execs the binary in its own pid: the recorded pid is the daemon's.
  setsid nsenter --net="/var/run/netns/$netns" -- "$bin" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$! exe i
  exe=$(readlink -f "$bin")
  echo "$pid $exe" >"$RUN/$name.pid"
  # Until nsenter has exec'd, the pid runs nsenter; wait for the daemon's own binary.
  for ((i = 0; i < 40; i++)); do [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe"* ]] && break; sleep 0.05; done
  hp_log "started $name in $netns (pid $pid, log $LOGS/$name.log)"
}

node_bootstrap_kubeconfig() { # node_bootstrap_kubeconfig SPEC OUT
  local spec=$1 out=$2
  if [[ -f $spec ]]; then
    cp "$spec" "$out"
  elif [[ $spec == *@* ]]; then
    kubectl "${ADMIN[@]}" -n "${spec#*@}" get secret "${spec%@*}" -o jsonpath='{.data.bootstrap-kubeconfig}' |
      base64 -d >"$out" || hp_die "cannot read the bootstrap kubeconfig of Secret $spec"
  else
    hp_die "--join takes a bootstrap kubeconfig file or SECRET@NAMESPACE, got $spec"
  fi
  [[ -s $out ]] || hp_die "the bootstrap kubeconfig from $spec is empty"
}

node_network_up() { # node_network_up NAME SLOT
  local name=$1 slot=$2 netns host_if
  netns=$(node_netns "$name") host_if="hpn$slot"
  ip netns add "$netns"
  ip link add "$host_if" type veth peer name eth0 netns "$netns"
  ip addr add "198.18.$slot.1/24" dev "$host_if"
  ip link set "$host_if" up
  ip -n "$netns" addr add "198.18.$slot.2/24" dev eth0
  ip -n "$netns" link set eth0 up
  ip -n "$netns" link set lo up
  ip -n "$netns" route add default via "198.18.$slot.1"
  ip route add "10.244.$slot.0/24" via "198.18.$slot.2"
  ip netns exec "$netns" sysctl -qw net.ipv4.ip_forward=1
}

node_containerd_config() { # node_containerd_config NAME SLOT
  local name=$1 slot=$2 dir
  dir=$(node_dir "$name")
  mkdir -p "$dir/containerd/root" "$dir/containerd/state" "$dir/cni/net.d" "$dir/cni/networks"
  # The seed's config with this node's paths, bridge and pod subnet.
  sed -e "s|$CTRD|$dir/containerd|g" -e "s|$HP_STATE/cni|$dir/cni|g" "$CTRD/config.toml" >"$dir/containerd/config.toml"
  cat >"$dir/cni/net.d/10-hpnode.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "hpnode-$name",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.$slot.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/cni/networks"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

node_kubelet_config() { # node_kubelet_config NAME: from the tenant's kubelet-config, read with the token
  local name=$1 dir tenant_cfg dns domain
  dir=$(node_dir "$name")
  tenant_cfg=$(kubectl --kubeconfig "$dir/bootstrap-kubelet.conf" -n kube-system get cm kubelet-config \
    -o jsonpath='{.data.kubelet}') || hp_die "the bootstrap credential cannot read kube-system/kubelet-config"
  dns=$(awk -F'[][" ]+' '/^clusterDNS:/ {print $2}' <<<"$tenant_cfg")
  domain=$(awk '/^clusterDomain:/ {print $2}' <<<"$tenant_cfg")
  [[ -n $dns && -n $domain ]] || hp_die "kubelet-config has no clusterDNS/clusterDomain"
  kubectl --kubeconfig "$dir/bootstrap-kubelet.conf" config view --raw \
    -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$dir/ca.crt"
  cat >"$dir/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /$(node_cgroup "$name")
containerRuntimeEndpoint: unix://$(node_sock "$name")
podLogsDir: $dir/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/ca.crt}
authorization: {mode: Webhook}
clusterDomain: $domain
clusterDNS: [$dns]
resolvConf: /etc/resolv.conf
rotateCertificates: true
failSwapOn: false
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 512Mi, imagefs.available: 512Mi, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
}

node_cgroups() { # node_cgroups up|down NAME
  local cg d
  cg=$(node_cgroup "$2")
  for d in /sys/fs/cgroup/*/; do
    [[ -d $d && ! -L ${d%/} ]] || continue
    if [[ $1 == up ]]; then
      mkdir -p "$d$cg"
      if [[ -f ${d}cpuset.cpus ]]; then
        cat "${d}cpuset.cpus" >"$d$cg/cpuset.cpus"
        cat "${d}cpuset.mems" >"$d$cg/cpuset.mems"
      fi
    elif [[ -d $d$cg ]]; then
      find "$d$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done
      sleep 0.1
      find "$d$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    fi
  done
}

node_add() {
  local name=${1:-} join="" version=$KUBERNETES_VERSION kubelet
  shift || true
  while (($#)); do
    case $1 in
      --join) join=${2:-}; shift 2 ;;
      --version) version=${2:-}; shift 2 ;;
      *) hp_die "usage: seed node add NAME --join FILE|SECRET@NAMESPACE [--version V]" ;;
    esac
  done
  [[ $name =~ $NODE_NAME_RE && -n $join ]] || hp_die "usage: seed node add NAME --join FILE|SECRET@NAMESPACE [--version V] (NAME: ${NODE_NAME_RE})"
  [[ " $KUBERNETES_VERSIONS " == *" $version "* ]] || hp_die "--version $version is not one of the versions the seed builds: $KUBERNETES_VERSIONS"
  kubelet=$(k8s_bin_dir "$version")/kubelet
  [[ -x $kubelet ]] || hp_die "no kubelet $version at $kubelet (e2e/seed/build-binaries builds it)"
  cmd_status >/dev/null 2>&1 || hp_die "the seed is not up"
  [[ ! -d $(node_dir "$name") ]] || hp_die "node $name exists; remove it first (seed node rm $name)"
  local dir slot netns start=$SECONDS
  dir=$(node_dir "$name") netns=$(node_netns "$name")
  mkdir -p "$dir/kubelet" "$dir/pki" "$dir/pod-logs"
  slot=$(free_slot)
  echo "$slot" >"$dir/slot"
  node_bootstrap_kubeconfig "$join" "$dir/bootstrap-kubelet.conf"
  node_network_up "$name" "$slot"
  node_containerd_config "$name" "$slot"
  node_kubelet_config "$name"
  node_cgroups up "$name"
  start_in_netns "node-$name-containerd" "$netns" "$(command -v containerd)" --config "$dir/containerd/config.toml"
  wait_for "node-$name-containerd" 30 ctr -a "$(node_sock "$name")" version
  CTRD_SOCK=$(node_sock "$name") IMPORT_ONLY='pause|kube-proxy|coredns|test-client' import_images
  start_in_netns "node-$name-kubelet" "$netns" "$kubelet" --config "$dir/kubelet-config.yaml" \
    --bootstrap-kubeconfig "$dir/bootstrap-kubelet.conf" --kubeconfig "$dir/kubelet.conf" \
    --cert-dir "$dir/pki" --root-dir "$dir/kubelet" --hostname-override "$name" --node-ip "198.18.$slot.2"
  wait_for "node-$name-kubelet" 60 test -s "$dir/kubelet.conf"
  hp_log "node $name (kubelet $version) registered with its tenant in $((SECONDS - start)) s (address 198.18.$slot.2, pods 10.244.$slot.0/24)"
}

node_rm() {
  local name=$1 dir netns pid
  dir=$(node_dir "$name") netns=$(node_netns "$name")
  [[ -d $dir ]] || { hp_log "no node $name"; return 0; }
  stop_daemon "node-$name-kubelet"
  if pid_of "node-$name-containerd" >/dev/null && [[ -x $HP_CACHE/build/podstop ]]; then
    timeout 60 "$HP_CACHE/build/podstop" --runtime-endpoint "unix://$(node_sock "$name")" >>"$LOGS/down.log" 2>&1 ||
      hp_log "some pods of node $name did not stop through the runtime; killing what is left"
  fi
  stop_daemon "node-$name-containerd"
  node_cgroups down "$name"
  for pid in $(pgrep -f "containerd-shim.*-address $(node_sock "$name")( |\$)" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  unmount_under "$dir"
  ip netns del "$netns" 2>/dev/null || true # takes the veth pair, the bridge and its rules with it
  ip route del "10.244.$(node_slot "$name").0/24" 2>/dev/null || true
  rm -f "$RUN/node-$name-containerd.pid" "$RUN/node-$name-kubelet.pid"
  rm -rf "$dir"
  hp_log "node $name removed"
}

node_check_clean() { # problems of nodes left behind, one per line
  local ns d
  [[ -n $(node_names) ]] && echo "node folders in $NODES"
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^hpn-/ {print $1}'); do echo "network namespace $ns"; done
  ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^hpn[0-9]+(@|$)/ {print "veth " $2}'
  for d in /sys/fs/cgroup/*/hostplane-node-*; do [[ -d $d ]] && echo "cgroup $d"; done
  return 0
}

cmd_node() {
  case ${1:-} in
    add) shift; node_add "$@" ;;
    rm) [[ -n ${2:-} ]] || hp_die "usage: seed node rm NAME"; node_rm "$2" ;;
    ls) local n; for n in $(node_names); do printf '%-14s 198.18.%s.2\n' "$n" "$(node_slot "$n")"; done ;;
    *) hp_die "usage: seed node add NAME --join FILE|SECRET@NAMESPACE | seed node rm NAME | seed node ls" ;;
  esac
}
