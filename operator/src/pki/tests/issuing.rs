//! What `execute` issues: profiles, SANs, chains, algorithms, validity, redaction.

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{cert_der, days, fresh, inputs, issue_all, leaves, t0, x509};
use crate::pki::{
    BACKDATE, Item, PkiError, PkiInputs, RenewalWindow, SA_PUB, TLS_KEY, Validity,
    kubernetes_service_ip,
};

fn assert_p256(spki: &SubjectPublicKeyInfo<'_>, what: &str) {
    assert_eq!(
        spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY,
        "{what}"
    );
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve, OID_EC_P256, "{what}");
    // An uncompressed P-256 point: 0x04 || X(32) || Y(32).
    assert_eq!(spki.subject_public_key.data.len(), 65, "{what}");
}

#[test]
fn every_key_is_ecdsa_p256_including_the_service_account_key() {
    let (pki, data) = fresh();
    for item in Item::ALL.into_iter().filter(|i| *i != Item::ServiceAccount) {
        let cert = pki.cert(item).unwrap();
        assert!(cert.key().is_ecdsa_p256(), "{item}");
        assert_p256(x509(cert.cert_der()).public_key(), item.secret_suffix());
        assert_eq!(
            cert.key().public_key_raw(),
            x509(cert.cert_der())
                .public_key()
                .subject_public_key
                .data
                .as_ref()
        );
        let pem = pem::parse(&data[&item][TLS_KEY]).unwrap();
        assert_eq!(pem.tag(), "PRIVATE KEY", "{item}: PKCS#8");
        // Signatures are ECDSA with SHA-256.
        assert_eq!(
            x509(cert.cert_der()).signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256,
            "{item}"
        );
    }
    let sa = pki.service_account_key();
    assert!(sa.is_ecdsa_p256());
    let public = pem::parse(&data[&Item::ServiceAccount][SA_PUB]).unwrap();
    assert_eq!(public.tag(), "PUBLIC KEY");
    let (_, spki) = SubjectPublicKeyInfo::from_der(public.contents()).unwrap();
    assert_p256(&spki, "sa.pub");
    assert_eq!(spki.subject_public_key.data.as_ref(), sa.public_key_raw());
}

#[test]
fn cas_have_the_ca_profile_and_are_self_signed() {
    let (pki, _) = fresh();
    for (item, cn) in [
        (Item::Ca, "kubernetes"),
        (Item::FrontProxyCa, "front-proxy-ca"),
        (Item::EtcdCa, "etcd-ca"),
    ] {
        let cert = x509(cert_der(&pki, item));
        let subject_cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(subject_cn, [cn]);
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(
            bc.critical && bc.value.ca,
            "{item}: basicConstraints CA:true, critical"
        );
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical, "{item}");
        assert!(
            ku.value.key_cert_sign() && ku.value.crl_sign() && ku.value.digital_signature(),
            "{item}"
        );
        assert!(!ku.value.key_encipherment(), "{item}");
        assert!(
            cert.extended_key_usage().unwrap().is_none(),
            "{item}: no EKU"
        );
        assert!(
            cert.subject_alternative_name().unwrap().is_none(),
            "{item}: no SANs"
        );
        assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());
        cert.verify_signature(None).unwrap();
    }
}

#[test]
fn leaves_have_kubeadm_subjects_and_usages() {
    let (pki, _) = fresh();
    // (item, CN, O, serverAuth, clientAuth)
    let expected: [(Item, &str, &[&str], bool, bool); 10] = [
        (Item::ApiserverCert, "kube-apiserver", &[], true, false),
        (
            Item::ApiserverKubeletClient,
            "kube-apiserver-kubelet-client",
            &["kubeadm:cluster-admins"],
            false,
            true,
        ),
        (
            Item::FrontProxyClient,
            "front-proxy-client",
            &[],
            false,
            true,
        ),
        (Item::EtcdServer, "kube-etcd", &[], true, true),
        (Item::EtcdPeer, "kube-etcd-peer", &[], true, true),
        (
            Item::ApiserverEtcdClient,
            "kube-apiserver-etcd-client",
            &[],
            false,
            true,
        ),
        (
            Item::ControllerManagerClient,
            "system:kube-controller-manager",
            &[],
            false,
            true,
        ),
        (
            Item::SchedulerClient,
            "system:kube-scheduler",
            &[],
            false,
            true,
        ),
        (
            Item::AdminClient,
            "hostplane-admin",
            &["kubeadm:cluster-admins"],
            false,
            true,
        ),
        (
            Item::SuperAdminClient,
            "hostplane-super-admin",
            &["system:masters"],
            false,
            true,
        ),
    ];
    assert_eq!(expected.map(|e| e.0).to_vec(), leaves().collect::<Vec<_>>());
    for (item, cn, orgs, server, client) in expected {
        let cert = x509(cert_der(&pki, item));
        let subject_cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let subject_o: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(subject_cn, [cn], "{item}");
        assert_eq!(subject_o, orgs, "{item}");
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca, "{item}: CA:false");
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment(), "{item}");
        assert!(!ku.key_cert_sign() && !ku.crl_sign(), "{item}");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert_eq!(
            (eku.server_auth, eku.client_auth),
            (server, client),
            "{item}"
        );
        assert!(!eku.any && eku.other.is_empty(), "{item}");
    }
}

fn sans(der: &[u8]) -> BTreeSet<String> {
    let cert = x509(der);
    let Some(ext) = cert.subject_alternative_name().unwrap() else {
        return BTreeSet::new();
    };
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => (*dns).to_owned(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
            }
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn apiserver_cert_has_every_san() {
    let (pki, _) = fresh();
    let expected = set(&[
        "10.96.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.tenant.local",
        "demo-apiserver",
        "demo-apiserver.tenants",
        "demo-apiserver.tenants.svc",
        "demo-apiserver.tenants.svc.cluster.local",
        "demo.example.com",
        "203.0.113.7",
        "api.demo.example",
        "127.0.0.1",
        "localhost",
    ]);
    assert_eq!(sans(cert_der(&pki, Item::ApiserverCert)), expected);
}

#[test]
fn etcd_server_and_peer_have_service_and_pod_sans() {
    let (pki, _) = fresh();
    let expected = set(&[
        "demo-etcd",
        "demo-etcd.tenants",
        "demo-etcd.tenants.svc",
        "demo-etcd.tenants.svc.cluster.local",
        "*.demo-etcd.tenants.svc",
        "*.demo-etcd.tenants.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ]);
    assert_eq!(sans(cert_der(&pki, Item::EtcdServer)), expected);
    assert_eq!(sans(cert_der(&pki, Item::EtcdPeer)), expected);
}

#[test]
fn seed_domain_is_an_input() {
    let mut inputs = inputs();
    inputs.seed_cluster_domain = "seed.internal".to_owned();
    let pki = issue_all(&inputs, t0());
    assert!(
        sans(cert_der(&pki, Item::ApiserverCert))
            .contains("demo-apiserver.tenants.svc.seed.internal")
    );
    assert!(sans(cert_der(&pki, Item::EtcdPeer)).contains("*.demo-etcd.tenants.svc.seed.internal"));
}

#[test]
fn client_certs_have_no_sans() {
    let (pki, _) = fresh();
    for item in
        leaves().filter(|i| !matches!(i, Item::ApiserverCert | Item::EtcdServer | Item::EtcdPeer))
    {
        assert!(sans(cert_der(&pki, item)).is_empty(), "{item}");
    }
}

fn key_id(cert: &x509_parser::certificate::X509Certificate<'_>, authority: bool) -> Vec<u8> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) if authority => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            ParsedExtension::SubjectKeyIdentifier(ski) if !authority => Some(ski.0.to_vec()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn every_leaf_verifies_with_its_ca_key_and_no_other() {
    let (pki, _) = fresh();
    let cas = [Item::Ca, Item::FrontProxyCa, Item::EtcdCa];
    for item in leaves() {
        let leaf = x509(cert_der(&pki, item));
        let issuer = pki.issuer_of(item).unwrap().item();
        for ca_item in cas {
            let ca = x509(cert_der(&pki, ca_item));
            let verified = leaf.verify_signature(Some(ca.public_key())).is_ok();
            assert_eq!(verified, ca_item == issuer, "{item} against {ca_item}");
            if ca_item == issuer {
                assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw(), "{item}");
                assert_eq!(
                    key_id(&leaf, true),
                    key_id(&ca, false),
                    "{item}: AKI is the CA's SKI"
                );
            }
        }
    }
    assert_eq!(
        pki.issuer_of(Item::FrontProxyClient).unwrap().item(),
        Item::FrontProxyCa
    );
    for item in [Item::EtcdServer, Item::EtcdPeer, Item::ApiserverEtcdClient] {
        assert_eq!(pki.issuer_of(item).unwrap().item(), Item::EtcdCa);
    }
}

#[test]
fn default_validity_is_ten_years_for_cas_and_one_year_for_leaves() {
    let (pki, _) = fresh();
    for item in Item::ALL.into_iter().filter(|i| *i != Item::ServiceAccount) {
        let cert = x509(cert_der(&pki, item));
        let lifetime = if item.is_root() {
            days(3650)
        } else {
            days(365)
        };
        assert_eq!(
            cert.validity().not_before.to_datetime(),
            t0() - BACKDATE,
            "{item}"
        );
        assert_eq!(
            cert.validity().not_after.to_datetime(),
            t0() + lifetime,
            "{item}"
        );
        let kept = pki.cert(item).unwrap();
        assert_eq!(
            (kept.not_before(), kept.not_after()),
            (t0() - BACKDATE, t0() + lifetime)
        );
    }
}

#[test]
fn validity_is_configurable() {
    let mut inputs = inputs();
    inputs.validity = Validity {
        ca: days(30),
        leaf: days(7),
        renewal: RenewalWindow::BeforeExpiry(days(2)),
    };
    let now = t0() + time::Duration::nanoseconds(123_456_789);
    let pki = issue_all(&inputs, now);
    let ca = x509(cert_der(&pki, Item::EtcdCa));
    assert_eq!(ca.validity().not_after.to_datetime(), t0() + days(30));
    let leaf = x509(cert_der(&pki, Item::SchedulerClient));
    assert_eq!(leaf.validity().not_after.to_datetime(), t0() + days(7));
}

#[test]
fn debug_output_never_contains_a_private_key() {
    let (pki, data) = fresh();
    let debug = format!("{pki:?} {pki:#?}");
    assert!(!debug.contains("PRIVATE KEY"));
    assert!(debug.contains("<redacted>"));
    // Not even the key material without its PEM armour.
    for item in Item::ALL {
        let key_pem = data[&item]
            .get(TLS_KEY)
            .or(data[&item].get(crate::pki::SA_KEY))
            .unwrap();
        let body_line = String::from_utf8(key_pem.clone())
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(!debug.contains(&body_line), "{item}");
    }
    let kept_plan = crate::pki::plan(&inputs(), &data, t0()).unwrap();
    let debug = format!("{kept_plan:?}");
    assert!(!debug.contains("PRIVATE KEY") && debug.contains("<redacted>"));
    assert_eq!(format!("{:?}", pki.service_account_key()), "<redacted>");
}

#[test]
fn kubernetes_service_ip_is_the_first_address_of_the_cidr() {
    let ip = |cidr: &str| kubernetes_service_ip(cidr).unwrap().to_string();
    assert_eq!(ip("10.96.0.0/16"), "10.96.0.1");
    assert_eq!(ip("10.96.12.0/12"), "10.96.0.1");
    assert_eq!(ip("172.20.0.0/30"), "172.20.0.1");
    assert_eq!(ip("fd00:10:96::/108"), "fd00:10:96::1");
    for bad in [
        "10.96.0.0",
        "10.96.0.0/31",
        "10.96.0.0/x",
        "nonsense/16",
        "fd00::/127",
    ] {
        assert!(
            matches!(kubernetes_service_ip(bad), Err(PkiError::InvalidInput(_))),
            "{bad}"
        );
    }
}

#[test]
fn invalid_inputs_are_refused_before_anything_is_planned() {
    let empty = std::collections::BTreeMap::new();
    let refused = |inputs: &PkiInputs| {
        matches!(
            crate::pki::plan(inputs, &empty, t0()),
            Err(PkiError::InvalidInput(_))
        )
    };
    let mut bad_san = inputs();
    bad_san.extra_sans.push("not a name".to_owned());
    assert!(refused(&bad_san));
    let mut bad_name = inputs();
    bad_name.tcp_name = "Demo_1".to_owned();
    assert!(refused(&bad_name));
    let mut whole_life = inputs();
    whole_life.validity.renewal = RenewalWindow::BeforeExpiry(days(400));
    assert!(
        refused(&whole_life),
        "a window longer than the leaf life would re-issue forever"
    );
    let mut zero = inputs();
    zero.validity.renewal = RenewalWindow::AfterElapsed {
        numerator: 0,
        denominator: 3,
    };
    assert!(refused(&zero));
    let mut short = inputs();
    short.validity.leaf = time::Duration::minutes(9);
    assert!(refused(&short));
}
