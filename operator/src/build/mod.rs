//! Pure builders: a validated tenant and its PKI in, the desired Kubernetes objects out. No
//! client, no clock, no randomness: the same inputs give byte-identical objects, so applying them
//! again changes nothing and restarts nothing.

pub mod addons;
pub mod apiserver;
pub mod backup;
pub mod controllers;
pub mod etcd;
pub mod gitops;
pub mod kubeconfig;
pub mod network_policy;
pub mod node_bootstrap;
pub mod pki_secrets;
mod pod;
pub mod profile;

use std::collections::BTreeMap;
use std::net::IpAddr;

use hostplane_api::v1alpha1::{DEFAULT_REGISTRY, TenantControlPlane};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource as _, ResourceExt as _};
use thiserror::Error;

use crate::pki::{self, Pki, PkiInputs};

/// Label on every object of a tenant: which TenantControlPlane it belongs to.
pub const TENANT_LABEL: &str = "hostplane.dev/tenant";
/// The operator's name in `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "hostplane";
/// The pinned versions (e2e/versions.env) the images are built with.
const VERSIONS_ENV: &str = include_str!("../../../e2e/versions.env");

/// The etcd image tag pinned in e2e/versions.env.
pub fn etcd_image_tag() -> &'static str {
    pinned("ETCD_IMAGE_TAG")
}

/// The value of `KEY=value` in e2e/versions.env (empty when missing; a unit test checks each).
fn pinned(key: &str) -> &'static str {
    VERSIONS_ENV
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_default()
}

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("spec.network.{field} {value:?} is not usable: {why}")]
    Network {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("the TenantControlPlane has no {0} (it must come from the API server)")]
    Metadata(&'static str),
    #[error("spec.etcd has no mode the operator supports (managed)")]
    EtcdMode,
    #[error("rendering the {0}: {1}")]
    Render(&'static str, String),
    /// The builders make one member, URL and flag per etcd replica: a count the API's rule
    /// refuses (an object stored past it) is refused here, never built.
    #[error("spec.etcd.managed.replicas {0} is not 1, 3 or 5")]
    EtcdReplicas(i32),
}

/// Where users reach the tenant's apiserver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// Everything derived and validated once from a TenantControlPlane.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub spec: hostplane_api::v1alpha1::TenantControlPlaneSpec,
    pub registry: String,
    pub kubernetes_service_ip: IpAddr,
    pub dns_service_ip: IpAddr,
    /// The seed cluster's DNS domain.
    pub seed_domain: String,
    /// Known once the apiserver Service exists.
    pub endpoint: Option<Endpoint>,
    /// Hibernated (see `crate::hibernation`): every workload is built with zero replicas.
    pub asleep: bool,
    /// The Kubernetes version the control plane is built with: `spec.version`, or the running
    /// one while an upgrade waits (the version-skew policy, see `crate::upgrade`).
    pub version: String,
    /// The version of the addons (kube-proxy): they follow the control plane once its rollout is
    /// over.
    pub addons_version: String,
}

impl Tenant {
    pub fn new(
        tcp: &TenantControlPlane,
        seed_domain: &str,
        endpoint: Option<Endpoint>,
    ) -> Result<Self, BuildError> {
        let name = tcp
            .metadata
            .name
            .clone()
            .ok_or(BuildError::Metadata("name"))?;
        let namespace = tcp.namespace().ok_or(BuildError::Metadata("namespace"))?;
        let uid = tcp
            .metadata
            .uid
            .clone()
            .ok_or(BuildError::Metadata("uid"))?;
        let spec = tcp.spec.clone();
        let Some(managed) = &spec.etcd.managed else {
            return Err(BuildError::EtcdMode);
        };
        if ![1, 3, 5].contains(&managed.replicas) {
            return Err(BuildError::EtcdReplicas(managed.replicas));
        }
        let net = &spec.network;
        let kubernetes_service_ip =
            pki::kubernetes_service_ip(&net.service_cidr).map_err(|e| BuildError::Network {
                field: "serviceCIDR",
                value: net.service_cidr.clone(),
                why: e.to_string(),
            })?;
        let dns_service_ip = match &net.dns_service_ip {
            Some(ip) => ip
                .parse()
                .map_err(|e: std::net::AddrParseError| BuildError::Network {
                    field: "dnsServiceIP",
                    value: ip.clone(),
                    why: e.to_string(),
                })?,
            None => default_dns_service_ip(&net.service_cidr, kubernetes_service_ip)?,
        };
        Ok(Self {
            owner: OwnerReference {
                api_version: TenantControlPlane::api_version(&()).into_owned(),
                kind: TenantControlPlane::kind(&()).into_owned(),
                name: name.clone(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            name,
            namespace,
            registry: spec
                .registry
                .clone()
                .unwrap_or_else(|| DEFAULT_REGISTRY.to_owned()),
            spec,
            kubernetes_service_ip,
            dns_service_ip,
            seed_domain: seed_domain.to_owned(),
            endpoint,
            asleep: false,
            version: tcp.spec.version.clone(),
            addons_version: tcp.spec.version.clone(),
        })
    }

    /// `wanted` replicas, or none while the tenant hibernates.
    pub fn replicas(&self, wanted: i32) -> i32 {
        if self.asleep { 0 } else { wanted }
    }

    /// The apiserver Service's port.
    pub fn api_server_port(&self) -> u16 {
        u16::try_from(self.spec.control_plane.service.port).unwrap_or(6443)
    }

    /// `https://host:port` users reach; the in-seed Service URL until the endpoint is known.
    pub fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("https://{}:{}", url_host(&e.host), e.port),
            None => self.in_seed_url(),
        }
    }

    /// The apiserver's URL inside the seed, by Service DNS name.
    pub fn in_seed_url(&self) -> String {
        format!(
            "https://{}:{}",
            self.service_dns(&format!("{}-apiserver", self.name)),
            self.api_server_port()
        )
    }

    /// `<svc>.<ns>.svc.<seed domain>`.
    pub fn service_dns(&self, service: &str) -> String {
        format!("{service}.{}.svc.{}", self.namespace, self.seed_domain)
    }

    /// The inputs of the pure PKI planner.
    pub fn pki_inputs(&self) -> PkiInputs {
        let mut inputs = PkiInputs::new(&self.name, &self.namespace, self.kubernetes_service_ip);
        inputs.seed_cluster_domain.clone_from(&self.seed_domain);
        inputs
            .tenant_cluster_domain
            .clone_from(&self.spec.network.cluster_domain);
        inputs.endpoint_host = self.endpoint.as_ref().map(|e| e.host.clone());
        inputs
            .extra_sans
            .clone_from(&self.spec.control_plane.cert_sans);
        // The schema's rules admit only well-formed lifetimes; anything else keeps the default.
        let pki = &self.spec.pki;
        if let Some(seconds) = pki.certificate_validity_seconds() {
            inputs.validity.leaf = time::Duration::seconds(seconds);
        }
        if let Some(seconds) = pki.ca_validity_seconds() {
            inputs.validity.ca = time::Duration::seconds(seconds);
        }
        inputs
    }

    /// `app.kubernetes.io/*` and the tenant label.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), component.to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.name.clone()),
            (
                "app.kubernetes.io/component".to_owned(),
                component.to_owned(),
            ),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGED_BY.to_owned(),
            ),
            (TENANT_LABEL.to_owned(), self.name.clone()),
        ])
    }

    /// The labels that select a component's pods (a stable subset of `labels`).
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/component".to_owned(),
                component.to_owned(),
            ),
            (TENANT_LABEL.to_owned(), self.name.clone()),
        ])
    }

    /// Metadata of a child: namespace, labels, owner.
    pub fn meta(&self, name: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// `<registry>/<image>`.
    pub fn image(&self, image: &str) -> String {
        format!("{}/{image}", self.registry.trim_end_matches('/'))
    }
}

/// An owned, labelled, empty Secret of this tenant.
pub fn owned_secret(tenant: &Tenant, name: &str) -> Secret {
    Secret {
        metadata: tenant.meta(name, "secrets"),
        ..Secret::default()
    }
}

fn nth_address(base: IpAddr, n: u8) -> IpAddr {
    match base {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from(v4).wrapping_add(u32::from(n)),
        )),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6).wrapping_add(u128::from(n)),
        )),
    }
}

/// The 10th address of the service CIDR, the DNS Service IP when `dnsServiceIP` is unset. A /29
/// or /30 (IPv6 /125, /126) holds the `kubernetes` Service IP but not this one, and a DNS Service
/// outside the range cannot be made in the tenant: an error naming the fix.
fn default_dns_service_ip(
    service_cidr: &str,
    kubernetes_service_ip: IpAddr,
) -> Result<IpAddr, BuildError> {
    let dns = nth_address(kubernetes_service_ip, 9);
    // Inside when it is in the same network as the `kubernetes` Service IP (network + 1).
    let inside = service_cidr.split_once('/').is_some_and(|(_, prefix)| {
        pki::kubernetes_service_ip(&format!("{dns}/{prefix}")).ok() == Some(kubernetes_service_ip)
    });
    if inside {
        return Ok(dns);
    }
    Err(BuildError::Network {
        field: "serviceCIDR",
        value: service_cidr.to_owned(),
        why: format!(
            "it has no room for the DNS Service IP (its 10th address, {dns}): set \
             spec.network.dnsServiceIP inside it, or use a /28 (IPv6 /124) or larger"
        ),
    })
}

/// An IP literal as a URL host (IPv6 in brackets).
pub fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Everything a tenant needs in the seed, in apply order. Destructured without `..` where it is
/// used, so a new kind cannot be forgotten.
#[derive(Clone, Debug, Default)]
pub struct Children {
    pub secrets: Vec<Secret>,
    pub services: Vec<Service>,
    pub statefulsets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub network_policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>,
}

impl Children {
    /// The metadata of every child, for the tests that check them all.
    #[cfg(test)]
    pub(crate) fn metas(&self) -> Vec<&ObjectMeta> {
        let Children {
            secrets,
            services,
            statefulsets,
            deployments,
            pdbs,
            network_policies,
        } = self;
        let mut metas: Vec<&ObjectMeta> = Vec::new();
        metas.extend(secrets.iter().map(|o| &o.metadata));
        metas.extend(services.iter().map(|o| &o.metadata));
        metas.extend(statefulsets.iter().map(|o| &o.metadata));
        metas.extend(deployments.iter().map(|o| &o.metadata));
        metas.extend(pdbs.iter().map(|o| &o.metadata));
        metas.extend(network_policies.iter().map(|o| &o.metadata));
        metas
    }
}

/// The desired children of `tenant` with its `pki` and the etcd encryption `key`.
pub fn build(tenant: &Tenant, pki: &Pki, key: &[u8; 32]) -> Result<Children, BuildError> {
    let mut secrets: Vec<Secret> = pki::Item::ALL
        .iter()
        .map(|item| pki_secrets::secret(tenant, pki, *item))
        .collect();
    secrets.extend(kubeconfig::secrets(tenant, pki));
    secrets.push(apiserver::encryption_config(tenant, key));
    let hashes = pod::SecretHashes::of(&secrets);
    let etcd = etcd::build(
        tenant,
        &hashes,
        &pki.trust_anchor_id(crate::pki::CaItem::Etcd),
    )?;
    let mut deployments = vec![apiserver::deployment(tenant, &hashes)?];
    deployments.extend(controllers::deployments(tenant, &hashes)?);
    let mut pdbs: Vec<PodDisruptionBudget> = deployments
        .iter()
        .filter_map(|d| pod::pdb(tenant, d))
        .collect();
    if etcd
        .statefulset
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        > 1
    {
        pdbs.push(pod::pdb_for(tenant, &etcd::name(tenant), etcd::COMPONENT));
    }
    Ok(Children {
        secrets,
        services: vec![etcd.service, apiserver::service(tenant)],
        statefulsets: vec![etcd.statefulset],
        deployments,
        pdbs,
        network_policies: network_policy::policies(tenant)?,
    })
}

#[cfg(test)]
mod tests;
