//! The tenant's kube-apiserver: a Deployment with kubeadm's flags, its Service, and the
//! encryption-at-rest configuration for the tenant's Secrets.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hostplane_api::v1alpha1::ServiceType;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::pod::{
    CONFIG_HASH, SecretHashes, container_security, flags, pod_security, probes, secret_volume,
    typed, with,
};
use super::profile::{self, Component};
use super::{BuildError, Tenant, etcd};
use crate::pki::{CA_CRT, Item, SA_KEY, SA_PUB, TLS_CRT, TLS_KEY};

pub const COMPONENT: &str = "kube-apiserver";
/// The port kube-apiserver listens on in its pod (the Service maps `spec.controlPlane.service.port` to it).
pub const PORT: i32 = 6443;
/// Key of the encryption configuration in Secret `<tcp>-encryption-config`.
pub const ENCRYPTION_CONFIG_KEY: &str = "encryption-config.yaml";
const PKI: &str = "/etc/kubernetes/pki";
/// Seconds a stopping API server keeps serving before it closes its listener
/// (`--shutdown-delay-duration`): time for every node's Service rules to drop it.
const SHUTDOWN_DELAY_SECONDS: i64 = 10;
/// The pod's grace period: the shutdown delay and then up to 30 s for requests in flight.
const TERMINATION_GRACE_SECONDS: i64 = SHUTDOWN_DELAY_SECONDS + 30;

pub fn name(tenant: &Tenant) -> String {
    format!("{}-apiserver", tenant.name)
}

/// The apiserver Service, built before anything else: its address goes into the certificate.
pub fn service(tenant: &Tenant) -> Service {
    let svc = &tenant.spec.control_plane.service;
    let type_ = match svc.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: tenant.meta(&name(tenant), COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(tenant.selector(COMPONENT)),
            ports: Some(vec![ServicePort {
                name: Some("https".to_owned()),
                port: svc.port,
                target_port: Some(IntOrString::Int(PORT)),
                protocol: Some("TCP".to_owned()),
                node_port: svc.node_port,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Secret `<tcp>-encryption-config`: Secrets are stored AES-CBC encrypted with `key`; `identity`
/// last so data written before encryption stays readable.
pub fn encryption_config(tenant: &Tenant, key: &[u8; 32]) -> Secret {
    let config = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: {}\n      - identity: {{}}\n",
        STANDARD.encode(key)
    );
    let mut secret = super::owned_secret(tenant, &format!("{}-encryption-config", tenant.name));
    secret.data = Some(
        [(
            ENCRYPTION_CONFIG_KEY.to_owned(),
            ByteString(config.into_bytes()),
        )]
        .into(),
    );
    secret
}

pub fn deployment(tenant: &Tenant, hashes: &SecretHashes) -> Result<Deployment, BuildError> {
    let t = &tenant.name;
    let spec = &tenant.spec.control_plane.api_server;
    let mounts = [
        (
            "ca",
            Item::Ca.secret_name(t),
            vec![CA_CRT],
            format!("{PKI}/ca"),
        ),
        (
            "serving",
            Item::ApiserverCert.secret_name(t),
            vec![TLS_CRT, TLS_KEY],
            format!("{PKI}/apiserver"),
        ),
        (
            "kubelet-client",
            Item::ApiserverKubeletClient.secret_name(t),
            vec![TLS_CRT, TLS_KEY],
            format!("{PKI}/kubelet-client"),
        ),
        (
            "front-proxy-client",
            Item::FrontProxyClient.secret_name(t),
            vec![TLS_CRT, TLS_KEY, CA_CRT],
            format!("{PKI}/front-proxy"),
        ),
        (
            "sa",
            Item::ServiceAccount.secret_name(t),
            vec![SA_KEY, SA_PUB],
            format!("{PKI}/sa"),
        ),
        (
            "etcd-client",
            Item::ApiserverEtcdClient.secret_name(t),
            vec![TLS_CRT, TLS_KEY, CA_CRT],
            format!("{PKI}/etcd"),
        ),
        (
            "encryption",
            format!("{t}-encryption-config"),
            vec![ENCRYPTION_CONFIG_KEY],
            "/etc/kubernetes/encryption".to_owned(),
        ),
    ];
    let (volumes, volume_mounts): (Vec<_>, Vec<_>) = mounts
        .iter()
        .map(|(v, s, keys, path)| secret_volume(v, s, keys, path))
        .unzip();
    let secrets: Vec<String> = mounts.iter().map(|(_, s, _, _)| s.clone()).collect();
    let tuning = profile::tuning(tenant.spec.profile, Component::ApiServer);
    let defaults = tuning.flags(default_flags(tenant));
    let probes = probes(
        &json!({"port": PORT, "scheme": "HTTPS"}),
        "/readyz",
        "/livez",
    );
    let mut deployment: Deployment = typed(
        "kube-apiserver Deployment",
        json!({
            "spec": {
                "replicas": tenant.replicas(spec.replicas),
                "selector": {"matchLabels": tenant.selector(COMPONENT)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": tenant.labels(COMPONENT), "annotations": {CONFIG_HASH: hashes.over(&secrets)}},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                        "securityContext": pod_security(),
                        "containers": [with(json!({
                            "name": "kube-apiserver",
                            "image": tenant.image(&format!("kube-apiserver:v{}", tenant.version)),
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["kube-apiserver"],
                            "args": flags(&defaults, &spec.extra_args),
                            "env": tuning.env(vec![]),
                            "ports": [{"name": "https", "containerPort": PORT}],
                            "resources": tuning.resources(spec.resources.as_ref()),
                            "securityContext": container_security(),
                            "volumeMounts": volume_mounts,
                        }), probes)],
                        "volumes": volumes,
                    },
                },
            },
        }),
    )?;
    deployment.metadata = tenant.meta(&name(tenant), COMPONENT);
    Ok(deployment)
}

/// kubeadm's kube-apiserver flags for this tenant; `extraArgs` override and extend them.
fn default_flags(tenant: &Tenant) -> Vec<(&'static str, String)> {
    let spec = &tenant.spec.control_plane.api_server;
    let mut defaults = vec![
        ("secure-port", PORT.to_string()),
        ("etcd-servers", etcd::client_urls(tenant).join(",")),
        ("etcd-cafile", format!("{PKI}/etcd/{CA_CRT}")),
        ("etcd-certfile", format!("{PKI}/etcd/{TLS_CRT}")),
        ("etcd-keyfile", format!("{PKI}/etcd/{TLS_KEY}")),
        ("client-ca-file", format!("{PKI}/ca/{CA_CRT}")),
        ("tls-cert-file", format!("{PKI}/apiserver/{TLS_CRT}")),
        ("tls-private-key-file", format!("{PKI}/apiserver/{TLS_KEY}")),
        (
            "kubelet-client-certificate",
            format!("{PKI}/kubelet-client/{TLS_CRT}"),
        ),
        (
            "kubelet-client-key",
            format!("{PKI}/kubelet-client/{TLS_KEY}"),
        ),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".to_owned(),
        ),
        (
            "requestheader-client-ca-file",
            format!("{PKI}/front-proxy/{CA_CRT}"),
        ),
        (
            "requestheader-allowed-names",
            "front-proxy-client".to_owned(),
        ),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".to_owned(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".to_owned()),
        ("requestheader-username-headers", "X-Remote-User".to_owned()),
        (
            "proxy-client-cert-file",
            format!("{PKI}/front-proxy/{TLS_CRT}"),
        ),
        (
            "proxy-client-key-file",
            format!("{PKI}/front-proxy/{TLS_KEY}"),
        ),
        (
            "service-account-issuer",
            format!(
                "https://kubernetes.default.svc.{}",
                tenant.spec.network.cluster_domain
            ),
        ),
        ("service-account-key-file", format!("{PKI}/sa/{SA_PUB}")),
        (
            "service-account-signing-key-file",
            format!("{PKI}/sa/{SA_KEY}"),
        ),
        (
            "service-cluster-ip-range",
            tenant.spec.network.service_cidr.clone(),
        ),
        // On SIGTERM (a rolling update, a drain) keep serving while the seed's Service stops
        // sending new connections here, then finish what is in flight: no request fails.
        (
            "shutdown-delay-duration",
            format!("{SHUTDOWN_DELAY_SECONDS}s"),
        ),
        ("authorization-mode", "Node,RBAC".to_owned()),
        ("enable-admission-plugins", "NodeRestriction".to_owned()),
        ("enable-bootstrap-token-auth", "true".to_owned()),
        ("allow-privileged", "true".to_owned()),
        (
            "encryption-provider-config",
            format!("/etc/kubernetes/encryption/{ENCRYPTION_CONFIG_KEY}"),
        ),
    ];
    if let Some(endpoint) = tenant
        .endpoint
        .as_ref()
        .filter(|e| e.host.parse::<std::net::IpAddr>().is_ok())
    {
        defaults.push(("advertise-address", endpoint.host.clone()));
    }
    if spec.replicas > 1 {
        // Clients on long-lived connections are sent elsewhere now and then, so load spreads.
        defaults.push(("goaway-chance", "0.001".to_owned()));
    }
    defaults
}
