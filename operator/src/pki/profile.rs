//! What each certificate must say: subject, SANs and usage, from the inputs alone.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use super::error::PkiError;
use super::inputs::PkiInputs;
use super::item::{Item, ItemKind};

/// CN of the user's admin client certificate.
pub const ADMIN_COMMON_NAME: &str = "hostplane-admin";
/// CN of the operator's super-admin client certificate.
pub const SUPER_ADMIN_COMMON_NAME: &str = "hostplane-super-admin";
/// The group kubeadm binds to `cluster-admin` (ClusterRoleBinding `kubeadm:cluster-admins`); the
/// tenant bootstrap must create that binding, or the admin and kubelet-client certs have no rights.
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
/// The group the apiserver grants everything to, whatever RBAC says.
pub const SYSTEM_MASTERS_GROUP: &str = "system:masters";

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    /// A DNS name (lowercase; a leading `*.` label is a wildcard).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl San {
    /// An IP address if `value` parses as one, else a DNS name (lowercased).
    pub fn parse(value: &str) -> Result<Self, PkiError> {
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let name = value.to_ascii_lowercase();
        let labels_ok = name.split('.').enumerate().all(|(i, label)| {
            (i == 0 && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        });
        if name.is_empty() || name.len() > 253 || !labels_ok || name == "*" {
            return Err(PkiError::InvalidInput(format!(
                "`{value}` is neither an IP address nor a DNS name"
            )));
        }
        Ok(San::Dns(name))
    }

    fn dns(name: impl Into<String>) -> Self {
        San::Dns(name.into())
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A CA: keyCertSign, cRLSign, digitalSignature; basicConstraints CA:true.
    Ca,
    /// A TLS server: digitalSignature, keyEncipherment; EKU serverAuth.
    Server,
    /// A TLS client: digitalSignature, keyEncipherment; EKU clientAuth.
    Client,
    /// Both (etcd server and peer): EKU serverAuth and clientAuth.
    ServerAndClient,
}

/// The desired contents of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertSpec {
    pub(crate) common_name: &'static str,
    pub(crate) organization: Option<&'static str>,
    pub(crate) sans: BTreeSet<San>,
    pub(crate) usage: Usage,
}

impl CertSpec {
    const fn new(common_name: &'static str, usage: Usage) -> Self {
        Self {
            common_name,
            organization: None,
            sans: BTreeSet::new(),
            usage,
        }
    }

    const fn with_org(mut self, organization: &'static str) -> Self {
        self.organization = Some(organization);
        self
    }

    fn with_sans(mut self, sans: BTreeSet<San>) -> Self {
        self.sans = sans;
        self
    }
}

/// The spec of a certificate item; `None` for the service-account key, which has none.
pub(crate) fn cert_spec(item: Item, inputs: &PkiInputs) -> Result<Option<CertSpec>, PkiError> {
    use Usage::{Ca, Client, Server, ServerAndClient};
    let spec = match item {
        Item::ServiceAccount => return Ok(None),
        Item::Ca => CertSpec::new("kubernetes", Ca),
        Item::FrontProxyCa => CertSpec::new("front-proxy-ca", Ca),
        Item::EtcdCa => CertSpec::new("etcd-ca", Ca),
        Item::ApiserverCert => {
            CertSpec::new("kube-apiserver", Server).with_sans(apiserver_sans(inputs)?)
        }
        Item::ApiserverKubeletClient => {
            CertSpec::new("kube-apiserver-kubelet-client", Client).with_org(CLUSTER_ADMINS_GROUP)
        }
        Item::FrontProxyClient => CertSpec::new("front-proxy-client", Client),
        Item::EtcdServer => {
            CertSpec::new("kube-etcd", ServerAndClient).with_sans(etcd_sans(inputs))
        }
        Item::EtcdPeer => {
            CertSpec::new("kube-etcd-peer", ServerAndClient).with_sans(etcd_sans(inputs))
        }
        Item::ApiserverEtcdClient => CertSpec::new("kube-apiserver-etcd-client", Client),
        Item::ControllerManagerClient => CertSpec::new("system:kube-controller-manager", Client),
        Item::SchedulerClient => CertSpec::new("system:kube-scheduler", Client),
        Item::AdminClient => {
            CertSpec::new(ADMIN_COMMON_NAME, Client).with_org(CLUSTER_ADMINS_GROUP)
        }
        Item::SuperAdminClient => {
            CertSpec::new(SUPER_ADMIN_COMMON_NAME, Client).with_org(SYSTEM_MASTERS_GROUP)
        }
    };
    debug_assert_eq!(
        matches!(item.kind(), ItemKind::Ca(_)),
        spec.usage == Usage::Ca,
        "only CAs have the CA profile"
    );
    Ok(Some(spec))
}

fn apiserver_sans(inputs: &PkiInputs) -> Result<BTreeSet<San>, PkiError> {
    let PkiInputs {
        tcp_name: tcp,
        namespace: ns,
        seed_cluster_domain: seed,
        tenant_cluster_domain: tenant,
        ..
    } = inputs;
    let mut sans: BTreeSet<San> = [
        San::Ip(inputs.kubernetes_service_ip),
        San::dns("kubernetes"),
        San::dns("kubernetes.default"),
        San::dns("kubernetes.default.svc"),
        San::dns(format!("kubernetes.default.svc.{tenant}")),
        San::dns(format!("{tcp}-apiserver")),
        San::dns(format!("{tcp}-apiserver.{ns}")),
        San::dns(format!("{tcp}-apiserver.{ns}.svc")),
        San::dns(format!("{tcp}-apiserver.{ns}.svc.{seed}")),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::dns("localhost"),
    ]
    .into();
    for extra in inputs.endpoint_host.iter().chain(&inputs.extra_sans) {
        sans.insert(San::parse(extra)?);
    }
    Ok(sans)
}

fn etcd_sans(inputs: &PkiInputs) -> BTreeSet<San> {
    let PkiInputs {
        tcp_name: tcp,
        namespace: ns,
        seed_cluster_domain: seed,
        ..
    } = inputs;
    [
        San::dns(format!("{tcp}-etcd")),
        San::dns(format!("{tcp}-etcd.{ns}")),
        San::dns(format!("{tcp}-etcd.{ns}.svc")),
        San::dns(format!("{tcp}-etcd.{ns}.svc.{seed}")),
        // The StatefulSet's pods: `<tcp>-etcd-<n>.<tcp>-etcd.<ns>.svc[.<domain>]`.
        San::dns(format!("*.{tcp}-etcd.{ns}.svc")),
        San::dns(format!("*.{tcp}-etcd.{ns}.svc.{seed}")),
        San::dns("localhost"),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ]
    .into()
}
