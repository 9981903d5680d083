//! The items of a tenant PKI and the Secrets they live in.

use std::fmt;

use super::secrets::{SECRET_TYPE_OPAQUE, SECRET_TYPE_TLS};

/// One item of the tenant PKI, stored in one Secret `<tcp>-<suffix>`.
///
/// The declaration order (and so `Ord`) puts the roots of trust — the three CAs and the
/// service-account key — before everything else: Secrets must be written in this order, so that a
/// present leaf always implies its roots were written before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    /// The cluster CA (`<tcp>-ca`): signs the apiserver serving cert and every client cert.
    Ca,
    /// The front-proxy CA (`<tcp>-front-proxy-ca`) for the aggregation layer.
    FrontProxyCa,
    /// The etcd CA (`<tcp>-etcd-ca`).
    EtcdCa,
    /// The service-account signing key pair (`<tcp>-sa`), no certificate.
    ServiceAccount,
    /// The apiserver serving certificate (`<tcp>-apiserver-cert`).
    ApiserverCert,
    /// The apiserver's client certificate towards kubelets (`<tcp>-apiserver-kubelet-client`).
    ApiserverKubeletClient,
    /// The apiserver's client certificate towards aggregated APIs (`<tcp>-front-proxy-client`).
    FrontProxyClient,
    /// The etcd serving certificate (`<tcp>-etcd-server`).
    EtcdServer,
    /// The etcd peer certificate (`<tcp>-etcd-peer`).
    EtcdPeer,
    /// The apiserver's client certificate towards etcd (`<tcp>-apiserver-etcd-client`).
    ApiserverEtcdClient,
    /// The controller-manager's client certificate (`<tcp>-controller-manager-client`).
    ControllerManagerClient,
    /// The scheduler's client certificate (`<tcp>-scheduler-client`).
    SchedulerClient,
    /// The user's admin client certificate (`<tcp>-admin-client`), bound to cluster-admin.
    AdminClient,
    /// The operator's own `system:masters` client certificate (`<tcp>-super-admin-client`).
    SuperAdminClient,
}

/// One of the three CAs of a tenant PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaItem {
    /// [`Item::Ca`].
    Cluster,
    /// [`Item::FrontProxyCa`].
    FrontProxy,
    /// [`Item::EtcdCa`].
    Etcd,
}

/// What an [`Item`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A self-signed CA.
    Ca(CaItem),
    /// The service-account key pair.
    ServiceAccountKey,
    /// A certificate signed by `issuer`.
    Leaf {
        /// The CA that signs it.
        issuer: CaItem,
    },
}

impl Item {
    /// Every item, roots first (the order Secrets must be written in).
    pub const ALL: [Item; 14] = [
        Item::Ca,
        Item::FrontProxyCa,
        Item::EtcdCa,
        Item::ServiceAccount,
        Item::ApiserverCert,
        Item::ApiserverKubeletClient,
        Item::FrontProxyClient,
        Item::EtcdServer,
        Item::EtcdPeer,
        Item::ApiserverEtcdClient,
        Item::ControllerManagerClient,
        Item::SchedulerClient,
        Item::AdminClient,
        Item::SuperAdminClient,
    ];

    /// What this item is, and for a leaf which CA signs it.
    #[must_use]
    pub const fn kind(self) -> ItemKind {
        match self {
            Item::Ca => ItemKind::Ca(CaItem::Cluster),
            Item::FrontProxyCa => ItemKind::Ca(CaItem::FrontProxy),
            Item::EtcdCa => ItemKind::Ca(CaItem::Etcd),
            Item::ServiceAccount => ItemKind::ServiceAccountKey,
            Item::FrontProxyClient => ItemKind::Leaf {
                issuer: CaItem::FrontProxy,
            },
            Item::EtcdServer | Item::EtcdPeer | Item::ApiserverEtcdClient => ItemKind::Leaf {
                issuer: CaItem::Etcd,
            },
            Item::ApiserverCert
            | Item::ApiserverKubeletClient
            | Item::ControllerManagerClient
            | Item::SchedulerClient
            | Item::AdminClient
            | Item::SuperAdminClient => ItemKind::Leaf {
                issuer: CaItem::Cluster,
            },
        }
    }

    /// Whether this item is a root of trust (a CA or the service-account key): never replaced
    /// without the user's explicit consent.
    #[must_use]
    pub const fn is_root(self) -> bool {
        !matches!(self.kind(), ItemKind::Leaf { .. })
    }

    /// The part of the Secret name after `<tcp>-`.
    #[must_use]
    pub const fn secret_suffix(self) -> &'static str {
        match self {
            Item::Ca => "ca",
            Item::FrontProxyCa => "front-proxy-ca",
            Item::EtcdCa => "etcd-ca",
            Item::ServiceAccount => "sa",
            Item::ApiserverCert => "apiserver-cert",
            Item::ApiserverKubeletClient => "apiserver-kubelet-client",
            Item::FrontProxyClient => "front-proxy-client",
            Item::EtcdServer => "etcd-server",
            Item::EtcdPeer => "etcd-peer",
            Item::ApiserverEtcdClient => "apiserver-etcd-client",
            Item::ControllerManagerClient => "controller-manager-client",
            Item::SchedulerClient => "scheduler-client",
            Item::AdminClient => "admin-client",
            Item::SuperAdminClient => "super-admin-client",
        }
    }

    /// The name of the Secret holding this item for the TenantControlPlane `tcp`.
    #[must_use]
    pub fn secret_name(self, tcp: &str) -> String {
        format!("{tcp}-{}", self.secret_suffix())
    }

    /// The item a Secret named `name` holds for the TenantControlPlane `tcp`, if any.
    #[must_use]
    pub fn from_secret_name(tcp: &str, name: &str) -> Option<Item> {
        let suffix = name.strip_prefix(tcp)?.strip_prefix('-')?;
        Item::ALL
            .into_iter()
            .find(|item| item.secret_suffix() == suffix)
    }

    /// The Secret `type`: `kubernetes.io/tls` for certificates, `Opaque` for the SA key pair.
    #[must_use]
    pub const fn secret_type(self) -> &'static str {
        match self {
            Item::ServiceAccount => SECRET_TYPE_OPAQUE,
            _ => SECRET_TYPE_TLS,
        }
    }

    /// A short human description, for messages.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Item::Ca => "cluster CA",
            Item::FrontProxyCa => "front-proxy CA",
            Item::EtcdCa => "etcd CA",
            Item::ServiceAccount => "service-account signing key",
            Item::ApiserverCert => "apiserver serving certificate",
            Item::ApiserverKubeletClient => "apiserver kubelet-client certificate",
            Item::FrontProxyClient => "front-proxy client certificate",
            Item::EtcdServer => "etcd server certificate",
            Item::EtcdPeer => "etcd peer certificate",
            Item::ApiserverEtcdClient => "apiserver etcd-client certificate",
            Item::ControllerManagerClient => "controller-manager client certificate",
            Item::SchedulerClient => "scheduler client certificate",
            Item::AdminClient => "admin client certificate",
            Item::SuperAdminClient => "super-admin client certificate",
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.secret_suffix())
    }
}

impl CaItem {
    /// The three CAs.
    pub const ALL: [CaItem; 3] = [CaItem::Cluster, CaItem::FrontProxy, CaItem::Etcd];

    /// The [`Item`] of this CA.
    #[must_use]
    pub const fn item(self) -> Item {
        match self {
            CaItem::Cluster => Item::Ca,
            CaItem::FrontProxy => Item::FrontProxyCa,
            CaItem::Etcd => Item::EtcdCa,
        }
    }
}

/// One value per CA, so that looking up a leaf's issuer cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByCa<T> {
    pub(crate) cluster: T,
    pub(crate) front_proxy: T,
    pub(crate) etcd: T,
}

impl<T> ByCa<T> {
    pub(crate) fn try_new<E>(mut f: impl FnMut(CaItem) -> Result<T, E>) -> Result<Self, E> {
        Ok(Self {
            cluster: f(CaItem::Cluster)?,
            front_proxy: f(CaItem::FrontProxy)?,
            etcd: f(CaItem::Etcd)?,
        })
    }

    pub(crate) const fn get(&self, ca: CaItem) -> &T {
        match ca {
            CaItem::Cluster => &self.cluster,
            CaItem::FrontProxy => &self.front_proxy,
            CaItem::Etcd => &self.etcd,
        }
    }

    pub(crate) const fn get_mut(&mut self, ca: CaItem) -> &mut T {
        match ca {
            CaItem::Cluster => &mut self.cluster,
            CaItem::FrontProxy => &mut self.front_proxy,
            CaItem::Etcd => &mut self.etcd,
        }
    }

    pub(crate) fn into_map<U, E>(
        self,
        mut f: impl FnMut(CaItem, T) -> Result<U, E>,
    ) -> Result<ByCa<U>, E> {
        Ok(ByCa {
            cluster: f(CaItem::Cluster, self.cluster)?,
            front_proxy: f(CaItem::FrontProxy, self.front_proxy)?,
            etcd: f(CaItem::Etcd, self.etcd)?,
        })
    }
}
