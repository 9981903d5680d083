//! kube-controller-manager and kube-scheduler: Deployments talking to the tenant's apiserver
//! through kubeconfig Secrets.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::pod::{
    CONFIG_HASH, SecretHashes, container_security, flags, pod_security, probes, secret_volume,
    typed, with,
};
use super::profile::{self, Component};
use super::{BuildError, Tenant, kubeconfig};
use crate::pki::{CA_CRT, Item, SA_KEY, TLS_CRT, TLS_KEY};

const PKI: &str = "/etc/kubernetes/pki";
const KUBECONFIG: &str = "/etc/kubernetes/kubeconfig";

pub fn deployments(tenant: &Tenant, hashes: &SecretHashes) -> Result<Vec<Deployment>, BuildError> {
    Ok(vec![
        controller_manager(tenant, hashes)?,
        scheduler(tenant, hashes)?,
    ])
}

fn controller_manager(tenant: &Tenant, hashes: &SecretHashes) -> Result<Deployment, BuildError> {
    let t = &tenant.name;
    let spec = &tenant.spec.control_plane.controller_manager;
    let kubeconfig = format!("{KUBECONFIG}/{}", kubeconfig::KUBECONFIG_KEY);
    let mounts = vec![
        (
            "kubeconfig",
            kubeconfig::secret_name(tenant, kubeconfig::CONTROLLER_MANAGER),
            vec![kubeconfig::KUBECONFIG_KEY],
            KUBECONFIG.to_owned(),
        ),
        // The cluster CA with its key (the controller-manager signs kubelet certificates) and
        // its trust bundle (for `kube-root-ca.crt` and client certificates).
        (
            "ca",
            Item::Ca.secret_name(t),
            vec![TLS_CRT, TLS_KEY, CA_CRT],
            format!("{PKI}/ca"),
        ),
        (
            "front-proxy-ca",
            Item::FrontProxyCa.secret_name(t),
            vec![CA_CRT],
            format!("{PKI}/front-proxy"),
        ),
        (
            "sa",
            Item::ServiceAccount.secret_name(t),
            vec![SA_KEY],
            format!("{PKI}/sa"),
        ),
    ];
    let defaults = vec![
        ("kubeconfig", kubeconfig.clone()),
        ("authentication-kubeconfig", kubeconfig.clone()),
        ("authorization-kubeconfig", kubeconfig),
        ("bind-address", "0.0.0.0".to_owned()),
        ("client-ca-file", format!("{PKI}/ca/{CA_CRT}")),
        (
            "requestheader-client-ca-file",
            format!("{PKI}/front-proxy/{CA_CRT}"),
        ),
        ("cluster-name", t.clone()),
        ("cluster-signing-cert-file", format!("{PKI}/ca/{TLS_CRT}")),
        ("cluster-signing-key-file", format!("{PKI}/ca/{TLS_KEY}")),
        // Kubelet client certificates live as long as the leaves the operator issues: a CA
        // rotation knows when the last one the old CA signed has expired.
        (
            "cluster-signing-duration",
            format!("{}s", tenant.pki_inputs().validity.leaf.whole_seconds()),
        ),
        ("controllers", "*,bootstrapsigner,tokencleaner".to_owned()),
        ("leader-elect", (spec.replicas > 1).to_string()),
        ("root-ca-file", format!("{PKI}/ca/{CA_CRT}")),
        (
            "service-account-private-key-file",
            format!("{PKI}/sa/{SA_KEY}"),
        ),
        ("use-service-account-credentials", "true".to_owned()),
        (
            "service-cluster-ip-range",
            tenant.spec.network.service_cidr.clone(),
        ),
        ("cluster-cidr", tenant.spec.network.pod_cidr.clone()),
        ("allocate-node-cidrs", "true".to_owned()),
    ];
    component(
        tenant,
        hashes,
        &CONTROLLER_MANAGER,
        spec,
        &mounts,
        &defaults,
    )
}

/// The longest lifetime of a certificate the controller-manager signed: what `extraArgs` set as
/// `cluster-signing-duration` (a value that is no Go duration of h/m/s counts as a year), else a
/// year or the leaves' lifetime if longer — before it set `--cluster-signing-duration` to the
/// leaves' lifetime, the operator left the controller-manager's default of a year, and kubelet
/// certificates signed then may still be in use.
pub fn signing_duration(tenant: &Tenant) -> time::Duration {
    let extra = &tenant.spec.control_plane.controller_manager.extra_args;
    match super::apiserver::extra_arg(extra, "cluster-signing-duration") {
        None => tenant
            .pki_inputs()
            .validity
            .leaf
            .max(time::Duration::days(365)),
        Some(value) => super::apiserver::go_duration(value).unwrap_or(time::Duration::days(365)),
    }
}

fn scheduler(tenant: &Tenant, hashes: &SecretHashes) -> Result<Deployment, BuildError> {
    let spec = &tenant.spec.control_plane.scheduler;
    let kubeconfig = format!("{KUBECONFIG}/{}", kubeconfig::KUBECONFIG_KEY);
    let mounts = vec![(
        "kubeconfig",
        kubeconfig::secret_name(tenant, kubeconfig::SCHEDULER),
        vec![kubeconfig::KUBECONFIG_KEY],
        KUBECONFIG.to_owned(),
    )];
    let defaults = vec![
        ("kubeconfig", kubeconfig.clone()),
        ("authentication-kubeconfig", kubeconfig.clone()),
        ("authorization-kubeconfig", kubeconfig),
        ("bind-address", "0.0.0.0".to_owned()),
        ("leader-elect", (spec.replicas > 1).to_string()),
    ];
    component(tenant, hashes, &SCHEDULER, spec, &mounts, &defaults)
}

/// Each controller's component (its pods' label) and secure port (health checks only).
pub const HEALTH_PORTS: [(&str, i32); 2] = [
    (CONTROLLER_MANAGER.name, CONTROLLER_MANAGER.health_port),
    (SCHEDULER.name, SCHEDULER.health_port),
];

/// The name of a controller's Deployment: `<tcp>-controller-manager`, `<tcp>-scheduler`.
pub fn name(tenant: &Tenant, component: &str) -> String {
    format!("{}-{}", tenant.name, component.trim_start_matches("kube-"))
}

/// A component's binary: its name (also its container's and command's), its profile entry and
/// the port of its health endpoint.
#[derive(Clone, Copy)]
struct Binary {
    name: &'static str,
    profile: Component,
    health_port: i32,
}

const CONTROLLER_MANAGER: Binary = Binary {
    name: "kube-controller-manager",
    profile: Component::ControllerManager,
    health_port: 10257,
};
const SCHEDULER: Binary = Binary {
    name: "kube-scheduler",
    profile: Component::Scheduler,
    health_port: 10259,
};

type Mount<'a> = (&'a str, String, Vec<&'a str>, String);

fn component(
    tenant: &Tenant,
    hashes: &SecretHashes,
    binary: &Binary,
    spec: &hostplane_api::v1alpha1::ComponentSpec,
    mounts: &[Mount<'_>],
    defaults: &[(&str, String)],
) -> Result<Deployment, BuildError> {
    let (volumes, volume_mounts): (Vec<_>, Vec<_>) = mounts
        .iter()
        .map(|(v, s, keys, path)| secret_volume(v, s, keys, path))
        .unzip();
    let secrets: Vec<String> = mounts.iter().map(|(_, s, _, _)| s.clone()).collect();
    let Binary {
        name: component,
        profile: which,
        health_port,
    } = *binary;
    let tuning = profile::tuning(tenant.spec.profile, which);
    let defaults = tuning.flags(defaults.to_vec());
    let probes = probes(
        &json!({"port": health_port, "scheme": "HTTPS"}),
        "/healthz",
        "/healthz",
    );
    let name = name(tenant, component);
    let mut deployment: Deployment = typed(
        "control-plane Deployment",
        json!({
            "spec": {
                "replicas": tenant.replicas(spec.replicas),
                "selector": {"matchLabels": tenant.selector(component)},
                "template": {
                    "metadata": {"labels": tenant.labels(component), "annotations": {CONFIG_HASH: hashes.over(&secrets)}},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        "containers": [with(json!({
                            "name": component,
                            "image": tenant.image(&format!("{component}:v{}", tenant.version)),
                            "imagePullPolicy": "IfNotPresent",
                            "command": [component],
                            "args": flags(&defaults, &spec.extra_args),
                            "env": tuning.env(vec![]),
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
    deployment.metadata = tenant.meta(&name, component);
    Ok(deployment)
}
