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
use crate::pki::{CA_CRT, Item, SA_KEY, TLS_CRT, TLS_KEY, VERIFY_PUB};

pub const COMPONENT: &str = "kube-apiserver";
/// The port kube-apiserver listens on in its pod (the Service maps `spec.controlPlane.service.port` to it).
pub const PORT: i32 = 6443;
/// Key of the encryption configuration in Secret `<tcp>-encryption-config`.
pub const ENCRYPTION_CONFIG_KEY: &str = "encryption-config.yaml";
const PKI: &str = "/etc/kubernetes/pki";
/// Seconds a stopping API server keeps serving before it closes its listener
/// (`--shutdown-delay-duration`): time for every node's Service rules to drop it.
const SHUTDOWN_DELAY_SECONDS: i64 = 10;
/// The longest a token the API server issues is valid (`--service-account-max-token-expiration`;
/// the kubelet's default 1-year tokens are capped to it too): how long a rotated-out
/// service-account key stays trusted. Gardener's default is 30 days; a day keeps a rotation short.
pub const MAX_TOKEN_HOURS: i64 = 24;
/// The flag that caps token lifetimes.
const MAX_TOKEN_FLAG: &str = "service-account-max-token-expiration";

/// The longest lifetime of a token the tenant's API servers issue: `MAX_TOKEN_HOURS`, or what
/// `extraArgs` set instead. A value that is no Go duration of h/m/s keeps a rotated-out key a
/// year (the API server refuses such a flag anyway, and the longest a token can otherwise live).
pub fn max_token_lifetime(tenant: &Tenant) -> time::Duration {
    let extra = &tenant.spec.control_plane.api_server.extra_args;
    match extra_arg(extra, MAX_TOKEN_FLAG) {
        None => time::Duration::hours(MAX_TOKEN_HOURS),
        Some(value) => go_duration(value).unwrap_or(time::Duration::days(365)),
    }
}

/// The value `extra_args` give the flag `name`: as `flags` reads them, `--name` and `name` are
/// one flag, the last one wins.
pub(crate) fn extra_arg<'a>(
    extra_args: &'a std::collections::BTreeMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    extra_args
        .iter()
        .rfind(|(k, _)| k.trim_start_matches('-') == name)
        .map(|(_, v)| v.as_str())
}

/// A Go duration made of hours, minutes and seconds (`24h`, `1h30m`, `5400s`), when it is one.
pub(crate) fn go_duration(value: &str) -> Option<time::Duration> {
    let mut total = time::Duration::ZERO;
    let mut number = String::new();
    for c in value.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'h' => time::Duration::hours(n),
            'm' => time::Duration::minutes(n),
            's' => time::Duration::seconds(n),
            _ => return None,
        };
    }
    (number.is_empty() && total > time::Duration::ZERO).then_some(total)
}
/// The pod's grace period: the shutdown delay and then up to 30 s for requests in flight.
pub const TERMINATION_GRACE_SECONDS: i64 = SHUTDOWN_DELAY_SECONDS + 30;

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
            vec![SA_KEY, VERIFY_PUB],
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
        // Every key tokens are accepted of: the signer's, and during a rotation the next one or
        // the one that signed before (crate::pki::sa_keys).
        ("service-account-key-file", format!("{PKI}/sa/{VERIFY_PUB}")),
        (
            "service-account-max-token-expiration",
            format!("{MAX_TOKEN_HOURS}h"),
        ),
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
        // Every replica advertises this one address, and the default (lease) reconciler keys
        // the `kubernetes` Service's endpoints by address: a replica that stops deleted the
        // shared entry, and pods inside saw `connection refused` until another one wrote it
        // again (up to 10 s). The operator writes those endpoints instead
        // (addons::kubernetes_endpoints).
        defaults.push(("endpoint-reconciler-type", "none".to_owned()));
    }
    if spec.replicas > 1 {
        // Clients on long-lived connections are sent elsewhere now and then, so load spreads.
        defaults.push(("goaway-chance", "0.001".to_owned()));
    }
    defaults
}
