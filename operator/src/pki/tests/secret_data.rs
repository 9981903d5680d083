//! Secret names, layout and the round trip through Secret data.

use std::collections::BTreeMap;

use super::{fresh, leaves};
use crate::pki::{
    CA_CRT, CertKeyPair, Item, Pki, PkiError, SA_KEY, SA_PUB, SECRET_TYPE_OPAQUE, SECRET_TYPE_TLS,
    TLS_CRT, TLS_KEY, VERIFY_PUB,
};

#[test]
fn every_item_has_its_secret_name_and_type() {
    let names: Vec<String> = Item::ALL
        .iter()
        .map(|item| item.secret_name("demo"))
        .collect();
    assert_eq!(
        names,
        [
            "demo-ca",
            "demo-front-proxy-ca",
            "demo-etcd-ca",
            "demo-sa",
            "demo-apiserver-cert",
            "demo-apiserver-kubelet-client",
            "demo-front-proxy-client",
            "demo-etcd-server",
            "demo-etcd-peer",
            "demo-apiserver-etcd-client",
            "demo-controller-manager-client",
            "demo-scheduler-client",
            "demo-admin-client",
            "demo-super-admin-client",
        ]
    );
    for item in Item::ALL {
        assert_eq!(
            Item::from_secret_name("demo", &item.secret_name("demo")),
            Some(item)
        );
        let expected = if item == Item::ServiceAccount {
            SECRET_TYPE_OPAQUE
        } else {
            SECRET_TYPE_TLS
        };
        assert_eq!(item.secret_type(), expected);
    }
    assert_eq!(Item::from_secret_name("demo", "demo-kubeconfig"), None);
    assert_eq!(Item::from_secret_name("demo", "demoX-ca"), None);
    assert_eq!(Item::from_secret_name("dem", "demo-ca"), None);
    // Roots sort (and so are written) before every leaf.
    assert!(Item::ALL.windows(2).all(|w| w[0] < w[1]));
    assert!(Item::ALL.iter().take(4).all(|item| item.is_root()));
}

#[test]
fn secret_data_has_the_documented_keys() {
    let (pki, data) = fresh();
    for item in [Item::Ca, Item::FrontProxyCa, Item::EtcdCa] {
        let secret = &data[&item];
        assert_eq!(
            secret.keys().collect::<Vec<_>>(),
            [CA_CRT, TLS_CRT, TLS_KEY]
        );
        assert_eq!(
            secret[CA_CRT], secret[TLS_CRT],
            "{item}: ca.crt is the CA itself"
        );
    }
    for item in leaves() {
        let secret = &data[&item];
        assert_eq!(
            secret.keys().collect::<Vec<_>>(),
            [CA_CRT, TLS_CRT, TLS_KEY]
        );
        let issuer = pki.issuer_of(item).unwrap().item();
        assert_eq!(
            secret[CA_CRT], data[&issuer][TLS_CRT],
            "{item}: ca.crt is its issuer"
        );
        assert!(secret[TLS_CRT].starts_with(b"-----BEGIN CERTIFICATE-----\n"));
        assert!(secret[TLS_KEY].starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    }
    let sa = &data[&Item::ServiceAccount];
    assert_eq!(sa.keys().collect::<Vec<_>>(), [SA_KEY, SA_PUB, VERIFY_PUB]);
    assert_eq!(
        sa[VERIFY_PUB], sa[SA_PUB],
        "only the signing key is trusted"
    );
    assert!(sa[SA_KEY].starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    assert!(sa[SA_PUB].starts_with(b"-----BEGIN PUBLIC KEY-----\n"));
}

#[test]
fn round_trip_through_secret_data_is_lossless() {
    let (pki, data) = fresh();
    let loaded = Pki::from_secret_data(&data).unwrap();
    assert_eq!(loaded.to_secret_data(), data);
    for item in Item::ALL {
        assert_eq!(
            loaded.cert(item).map(CertKeyPair::cert_der),
            pki.cert(item).map(CertKeyPair::cert_der)
        );
        assert_eq!(
            loaded.cert(item).map(|c| (c.not_before(), c.not_after())),
            pki.cert(item).map(|c| (c.not_before(), c.not_after()))
        );
    }
    assert_eq!(
        loaded.service_account_key().to_pkcs8_pem(),
        pki.service_account_key().to_pkcs8_pem()
    );
    assert!(pki.changed_secrets(&data).is_empty());
    assert_eq!(pki.changed_secrets(&BTreeMap::new()), Item::ALL.to_vec());
}

#[test]
fn changed_secrets_ignores_foreign_keys_and_sees_stale_ones() {
    let (pki, mut data) = fresh();
    data.get_mut(&Item::AdminClient)
        .unwrap()
        .insert("note".to_owned(), b"added by a user".to_vec());
    assert!(pki.changed_secrets(&data).is_empty());
    data.get_mut(&Item::SchedulerClient)
        .unwrap()
        .insert(CA_CRT.to_owned(), b"stale".to_vec());
    data.get_mut(&Item::ServiceAccount).unwrap().remove(SA_PUB);
    assert_eq!(
        pki.changed_secrets(&data),
        [Item::ServiceAccount, Item::SchedulerClient]
    );
}

#[test]
fn strict_loading_names_the_item_that_is_missing_or_broken() {
    let (_, data) = fresh();
    let mut missing = data.clone();
    missing.remove(&Item::EtcdPeer);
    assert!(matches!(
        Pki::from_secret_data(&missing),
        Err(PkiError::SecretData {
            item: Item::EtcdPeer,
            ..
        })
    ));
    let mut swapped = data.clone();
    let other_key = data[&Item::AdminClient][TLS_KEY].clone();
    swapped
        .get_mut(&Item::SchedulerClient)
        .unwrap()
        .insert(TLS_KEY.to_owned(), other_key);
    let err = Pki::from_secret_data(&swapped).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::SecretData {
                item: Item::SchedulerClient,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("does not match"), "{err}");
}
