//! The addons the operator runs inside the tenant, as kubeadm's `addon` phase makes them:
//! CoreDNS (Deployment + `kube-dns` Service on the DNS service IP) and kube-proxy (a DaemonSet
//! that reaches the API server at the tenant's endpoint, since the `kubernetes` Service needs
//! kube-proxy to work). Applied inside the tenant; an addon switched off is deleted there.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde_json::json;

use super::pod::typed;
use super::{BuildError, MANAGED_BY, Tenant};

/// The container port CoreDNS listens on: above 1024, so it runs without root or capabilities
/// (Kubernetes gives a non-root container no ambient capability); the Service maps 53 to it.
pub const COREDNS_PORT: i32 = 1053;
pub const NAMESPACE: &str = "kube-system";
pub const COREDNS: &str = "coredns";
pub const KUBE_DNS_SERVICE: &str = "kube-dns";
pub const KUBE_PROXY: &str = "kube-proxy";

/// The CoreDNS image tag pinned in e2e/versions.env (`v<version>`).
pub fn coredns_image_tag() -> String {
    format!("v{}", super::pinned("COREDNS_VERSION"))
}

/// The endpoints of the `default/kubernetes` Service inside the tenant — the tenant's endpoint,
/// address and port, where pods reach the API servers (the API server's own lease reconciler
/// would write its advertise address with its bind port, wrong behind a Service that maps
/// ports; it runs with `--endpoint-reconciler-type=none`, see apiserver.rs) — when the endpoint
/// is an IP address (otherwise the API server writes them itself).
pub fn kubernetes_endpoints(
    tenant: &Tenant,
) -> Result<Option<(Endpoints, EndpointSlice)>, BuildError> {
    let Some((ip, port)) = tenant.endpoint.as_ref().and_then(|e| {
        let ip = e.host.parse::<std::net::IpAddr>().ok()?;
        Some((ip, e.port))
    }) else {
        return Ok(None);
    };
    let managed = json!({"app.kubernetes.io/managed-by": MANAGED_BY});
    let mut endpoints_labels = managed.clone();
    // Mirrored by nothing: the slice below is written as well.
    endpoints_labels["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
    let endpoints: Endpoints = typed(
        "kubernetes Endpoints",
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": endpoints_labels},
            "subsets": [{
                "addresses": [{"ip": ip.to_string()}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }],
        }),
    )?;
    let mut slice_labels = managed;
    slice_labels["kubernetes.io/service-name"] = json!("kubernetes");
    let slice: EndpointSlice = typed(
        "kubernetes EndpointSlice",
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": slice_labels},
            "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }),
    )?;
    Ok(Some((endpoints, slice)))
}

/// An addon's objects inside the tenant, by kind.
#[derive(Debug, Default)]
pub struct Addon {
    pub service_accounts: Vec<ServiceAccount>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub config_maps: Vec<ConfigMap>,
    pub services: Vec<Service>,
    pub deployments: Vec<Deployment>,
    pub daemon_sets: Vec<DaemonSet>,
}

fn meta(name: &str, namespaced: bool, app: &str) -> serde_json::Value {
    let mut meta = json!({"name": name, "labels": {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "k8s-app": app,
    }});
    if namespaced {
        meta["namespace"] = json!(NAMESPACE);
    }
    meta
}

fn binding(name: &str, role: &str, service_account: &str, app: &str) -> serde_json::Value {
    json!({
        "metadata": meta(name, false, app),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}],
    })
}

fn corefile(tenant: &Tenant) -> String {
    let domain = &tenant.spec.network.cluster_domain;
    format!(
        ".:{COREDNS_PORT} {{\n    errors\n    health {{\n        lameduck 5s\n    }}\n    ready\n    kubernetes {domain} in-addr.arpa ip6.arpa {{\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 30\n    }}\n    prometheus :9153\n    forward . /etc/resolv.conf {{\n        max_concurrent 1000\n    }}\n    cache 30\n    loop\n    reload\n    loadbalance\n}}\n"
    )
}

/// CoreDNS: its account and read-only RBAC, the Corefile, one Deployment and the `kube-dns`
/// Service on the tenant's DNS service IP.
pub fn coredns(tenant: &Tenant) -> Result<Addon, BuildError> {
    let app = "kube-dns";
    let role = "system:coredns";
    let selector = json!({"k8s-app": app});
    Ok(Addon {
        service_accounts: vec![typed(
            "CoreDNS ServiceAccount",
            json!({"metadata": meta(COREDNS, true, app)}),
        )?],
        cluster_roles: vec![typed(
            "CoreDNS ClusterRole",
            json!({
                "metadata": meta(role, false, app),
                "rules": [
                    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
                ],
            }),
        )?],
        cluster_role_bindings: vec![typed(
            "CoreDNS ClusterRoleBinding",
            binding(role, role, COREDNS, app),
        )?],
        config_maps: vec![typed(
            "CoreDNS ConfigMap",
            json!({"metadata": meta(COREDNS, true, app), "data": {"Corefile": corefile(tenant)}}),
        )?],
        services: vec![typed(
            "kube-dns Service",
            json!({
                "metadata": meta(KUBE_DNS_SERVICE, true, app),
                "spec": {
                    "clusterIP": tenant.dns_service_ip.to_string(),
                    "selector": selector,
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": COREDNS_PORT},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": COREDNS_PORT},
                        {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                    ],
                },
            }),
        )?],
        deployments: vec![typed(
            "CoreDNS Deployment",
            json!({
                "metadata": meta(COREDNS, true, app),
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": {"labels": selector},
                        "spec": {
                            "serviceAccountName": COREDNS,
                            "priorityClassName": "system-cluster-critical",
                            // The node's resolver, which the Corefile forwards to.
                            "dnsPolicy": "Default",
                            "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                            "containers": [{
                                "name": "coredns",
                                "image": tenant.image(&format!("coredns/coredns:{}", coredns_image_tag())),
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": COREDNS_PORT, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": COREDNS_PORT, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                                ],
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "170Mi"}},
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 60, "failureThreshold": 5},
                                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": true}],
                            }],
                            "volumes": [{"name": "config", "configMap": {"name": COREDNS}}],
                        },
                    },
                },
            }),
        )?],
        daemon_sets: Vec::new(),
    })
}

/// kube-proxy: its account bound to `system:node-proxier`, its configuration (iptables mode,
/// the pod CIDR, the API server at the tenant's endpoint) and the DaemonSet on every node.
pub fn kube_proxy(tenant: &Tenant) -> Result<Addon, BuildError> {
    let app = KUBE_PROXY;
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "default", "cluster": {"server": tenant.endpoint_url(), "certificate-authority": format!("{sa}/ca.crt")}}],
        "users": [{"name": "default", "user": {"tokenFile": format!("{sa}/token")}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default", "namespace": "default"}}],
        "current-context": "default",
    });
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        "mode": "iptables",
        "clusterCIDR": tenant.spec.network.pod_cidr,
        // Leave the node's conntrack sysctls alone (nodes may not allow writing them).
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    });
    let selector = json!({"k8s-app": app});
    Ok(Addon {
        service_accounts: vec![typed(
            "kube-proxy ServiceAccount",
            json!({"metadata": meta(KUBE_PROXY, true, app)}),
        )?],
        cluster_roles: Vec::new(),
        cluster_role_bindings: vec![typed(
            "kube-proxy ClusterRoleBinding",
            binding(
                "kubeadm:node-proxier",
                "system:node-proxier",
                KUBE_PROXY,
                app,
            ),
        )?],
        config_maps: vec![typed(
            "kube-proxy ConfigMap",
            json!({"metadata": meta(KUBE_PROXY, true, app), "data": {
                "config.conf": config.to_string(),
                "kubeconfig.conf": kubeconfig.to_string(),
            }}),
        )?],
        services: Vec::new(),
        deployments: Vec::new(),
        daemon_sets: vec![typed(
            "kube-proxy DaemonSet",
            json!({
                "metadata": meta(KUBE_PROXY, true, app),
                "spec": {
                    "selector": {"matchLabels": selector},
                    "updateStrategy": {"type": "RollingUpdate"},
                    "template": {
                        "metadata": {"labels": selector},
                        "spec": {
                            "serviceAccountName": KUBE_PROXY,
                            "priorityClassName": "system-node-critical",
                            "hostNetwork": true,
                            "tolerations": [{"operator": "Exists"}],
                            "nodeSelector": {"kubernetes.io/os": "linux"},
                            "containers": [{
                                "name": "kube-proxy",
                                "image": tenant.image(&format!("kube-proxy:v{}", tenant.addons_version)),
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                                "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                                // iptables rules in the node's network namespace need privilege.
                                "securityContext": {"privileged": true},
                                "volumeMounts": [
                                    {"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy", "readOnly": true},
                                    {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
                                    {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true},
                                ],
                            }],
                            "volumes": [
                                {"name": "kube-proxy", "configMap": {"name": KUBE_PROXY}},
                                {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                                {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                            ],
                        },
                    },
                },
            }),
        )?],
    })
}
