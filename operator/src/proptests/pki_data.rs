//! The PKI read back from its Secrets (`pki::plan`, `Pki::from_secret_data`): Secret data that is
//! damaged, foreign or random garbage gives re-issues of leaves and errors, never a panic, and a
//! root of trust (a CA, the service-account key) that exists but cannot be used is reported as
//! unavailable, never replaced without the user's consent.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::strategies::{config, domain, ip, text};
use super::{fixture_inputs, fixture_secrets, t0};
use crate::pki::{
    self, Action, ExistingSecrets, Item, ItemKind, Pki, PkiError, ReissueReason, RootDefect,
    SA_KEY, SecretData, TLS_CRT, TLS_KEY,
};

/// One thing done to an item's Secret.
#[derive(Clone, Debug)]
enum Damage {
    /// The Secret is gone.
    Delete,
    /// A key of its data is gone.
    Remove(&'static str),
    /// A value replaced by random bytes.
    Garbage(&'static str, Vec<u8>),
    /// A value replaced by a PEM block of random bytes, labelled as the value's own.
    GarbagePem(&'static str, Vec<u8>),
    /// A PEM value cut short, before its END line.
    Truncate(&'static str, usize),
    /// `tls.key` replaced by another P-256 key (the service account's).
    ForeignKey,
    /// `tls.crt` and `tls.key` replaced by another leaf's (for a CA: a certificate that is no CA).
    ForeignCert(Item),
    /// One byte of the certificate's DER changed (it may still parse, even verify).
    Flip(usize, u8),
}

impl Damage {
    /// Whether the item cannot be kept after this, whatever the bytes drawn.
    fn certain(&self) -> bool {
        !matches!(self, Damage::Flip(..))
    }

    /// Whether the data no longer reads as a certificate with its key (or a key) at all; a
    /// foreign certificate with its own key reads, it is only not this item's.
    fn unreadable(&self) -> bool {
        self.certain() && !matches!(self, Damage::ForeignCert(_))
    }
}

fn leaves() -> Vec<Item> {
    Item::ALL.into_iter().filter(|i| !i.is_root()).collect()
}

fn damage_for(item: Item) -> BoxedStrategy<Damage> {
    let keys: Vec<&'static str> = if item == Item::ServiceAccount {
        vec![SA_KEY]
    } else {
        vec![TLS_CRT, TLS_KEY]
    };
    let key = prop::sample::select(keys);
    let common = prop_oneof![
        Just(Damage::Delete),
        key.clone().prop_map(Damage::Remove),
        (key.clone(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(k, b)| Damage::Garbage(k, b)),
        (key.clone(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(k, b)| Damage::GarbagePem(k, b)),
        (key, 0usize..2000).prop_map(|(k, at)| Damage::Truncate(k, at)),
    ];
    if item == Item::ServiceAccount {
        return common.boxed();
    }
    let foreign = prop::sample::select(leaves())
        .prop_filter("another item", move |other| *other != item)
        .prop_map(Damage::ForeignCert);
    prop_oneof![
        4 => common,
        1 => Just(Damage::ForeignKey),
        1 => foreign,
        1 => (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Damage::Flip(at, x)),
    ]
    .boxed()
}

/// Damage to 1 to 4 distinct items, roots or leaves.
fn damages() -> impl Strategy<Value = BTreeMap<Item, Damage>> {
    prop::collection::btree_map(prop::sample::select(Item::ALL.to_vec()), Just(()), 1..=4)
        .prop_flat_map(|items| {
            items
                .into_keys()
                .map(|item| damage_for(item).prop_map(move |d| (item, d)))
                .collect::<Vec<_>>()
        })
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn pem_label(key: &str) -> &'static str {
    if key == TLS_CRT {
        "CERTIFICATE"
    } else {
        "PRIVATE KEY"
    }
}

fn apply(existing: &mut ExistingSecrets, item: Item, damage: &Damage) {
    let original = fixture_secrets();
    let Some(data) = existing.get_mut(&item) else {
        return;
    };
    match damage {
        Damage::Delete => {
            existing.remove(&item);
        }
        Damage::Remove(key) => {
            data.remove(*key);
        }
        Damage::Garbage(key, bytes) => {
            data.insert((*key).to_owned(), bytes.clone());
        }
        Damage::GarbagePem(key, bytes) => {
            let block = pem::encode(&pem::Pem::new(pem_label(key), bytes.clone()));
            data.insert((*key).to_owned(), block.into_bytes());
        }
        Damage::Truncate(key, at) => {
            let value = data.get_mut(*key).unwrap();
            // The END line (`-----END PRIVATE KEY-----\n`) is at most 26 bytes.
            value.truncate(at % value.len().saturating_sub(26).max(1));
        }
        Damage::ForeignKey => {
            let key = original[&Item::ServiceAccount][SA_KEY].clone();
            data.insert(TLS_KEY.to_owned(), key);
        }
        Damage::ForeignCert(other) => {
            for key in [TLS_CRT, TLS_KEY] {
                data.insert(key.to_owned(), original[other][key].clone());
            }
        }
        Damage::Flip(at, x) => {
            let mut der = pem::parse(&data[TLS_CRT]).unwrap().into_contents();
            let at = at % der.len();
            der[at] ^= x;
            let block = pem::encode(&pem::Pem::new("CERTIFICATE", der));
            data.insert(TLS_CRT.to_owned(), block.into_bytes());
        }
    }
}

/// Random Secret data: keys the PKI reads (and others), values of random bytes or random PEM.
fn garbage_data() -> impl Strategy<Value = SecretData> {
    let key = prop_oneof![
        prop::sample::select(vec![TLS_CRT, TLS_KEY, SA_KEY, "ca.crt"]).prop_map(str::to_owned),
        "[a-z.]{1,8}",
    ];
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        (
            prop::sample::select(vec!["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY", "X"]),
            prop::collection::vec(any::<u8>(), 0..400)
        )
            .prop_map(|(label, bytes)| pem::encode(&pem::Pem::new(label, bytes)).into_bytes()),
    ];
    prop::collection::btree_map(key, value, 0..4)
}

fn now() -> impl Strategy<Value = time::OffsetDateTime> {
    // Within the leaves' validity, before their renewal window (2/3 of a year).
    (0i64..200).prop_map(|days| t0() + time::Duration::days(days))
}

fn roots() -> impl Iterator<Item = Item> {
    Item::ALL.into_iter().filter(|i| i.is_root())
}

proptest! {
    #![proptest_config(config(48))]

    /// Damaged Secrets: a root whose data certainly cannot be used is reported (as missing or
    /// unusable, naming its Secret), and a root is never issued or re-issued without consent.
    /// With consent, exactly the damaged roots are replaced and everything their CA signed is
    /// re-issued; a damaged leaf is re-issued, the rest kept. Strict loading refuses data
    /// that does not read.
    #[test]
    fn a_damaged_root_is_reported_never_replaced_without_consent(
        damages in damages(),
        now in now(),
    ) {
        let mut existing = fixture_secrets().clone();
        for (item, damage) in &damages {
            apply(&mut existing, *item, damage);
        }
        let certain: BTreeSet<Item> =
            damages.iter().filter(|(_, d)| d.certain()).map(|(i, _)| *i).collect();
        let certain_roots: BTreeSet<Item> =
            certain.iter().copied().filter(|i| i.is_root()).collect();
        let damaged_roots: BTreeSet<Item> =
            damages.keys().copied().filter(|i| i.is_root()).collect();
        let present: Vec<String> = existing.keys().map(|i| i.secret_name("t")).collect();

        let mut inputs = fixture_inputs();
        match pki::plan(&inputs, &existing, now) {
            Ok(plan) => {
                prop_assert!(certain_roots.is_empty(), "damaged roots {:?} planned", certain_roots);
                for root in roots() {
                    prop_assert_eq!(plan.action(root), Some(&Action::Keep), "{}", root);
                }
                for leaf in certain.iter().filter(|i| !i.is_root()) {
                    prop_assert_ne!(plan.action(*leaf), Some(&Action::Keep), "{}", leaf);
                }
            }
            Err(PkiError::RootsUnavailable(problems)) => {
                let reported: BTreeSet<Item> = problems.iter().map(|p| p.item).collect();
                prop_assert!(
                    reported.is_superset(&certain_roots),
                    "{:?} not all in {:?}",
                    certain_roots,
                    reported
                );
                prop_assert!(reported.is_subset(&damaged_roots), "{:?} were not damaged", reported);
                for p in &problems {
                    prop_assert_eq!(&p.secret, &p.item.secret_name("t"));
                    match (&p.defect, existing.contains_key(&p.item)) {
                        (RootDefect::Missing { present: listed }, false) => {
                            prop_assert_eq!(listed, &present);
                        }
                        (RootDefect::Unusable(why), true) => prop_assert!(!why.is_empty()),
                        (defect, _) => {
                            return Err(TestCaseError::fail(format!("{}: {defect:?}", p.item)));
                        }
                    }
                }
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }

        // With consent for every damaged root.
        inputs.accept_new_roots = damaged_roots.clone();
        let plan = pki::plan(&inputs, &existing, now)
            .map_err(|e| TestCaseError::fail(format!("with consent: {e}")))?;
        let mut replaced_cas = BTreeSet::new();
        for root in roots() {
            let action = plan.action(root).unwrap();
            if certain_roots.contains(&root) {
                prop_assert!(
                    matches!(action, Action::Reissue(ReissueReason::ReplacementAccepted(_))),
                    "{}: {:?}", root, action
                );
            } else if !damaged_roots.contains(&root) {
                prop_assert_eq!(action, &Action::Keep, "{}", root);
            }
            if *action != Action::Keep && let ItemKind::Ca(ca) = root.kind() {
                replaced_cas.insert(ca);
            }
        }
        for leaf in leaves() {
            let ItemKind::Leaf { issuer } = leaf.kind() else { unreachable!() };
            let action = plan.action(leaf).unwrap();
            if !existing.contains_key(&leaf) {
                prop_assert_eq!(action, &Action::Issue, "{}", leaf);
            } else if replaced_cas.contains(&issuer) {
                // Re-issued for its CA, or for its own damage found first.
                if damages.contains_key(&leaf) {
                    prop_assert!(matches!(action, Action::Reissue(_)), "{}: {:?}", leaf, action);
                } else {
                    let replaced = Action::Reissue(ReissueReason::IssuerReplaced);
                    prop_assert_eq!(action, &replaced, "{}", leaf);
                }
            } else if certain.contains(&leaf) {
                prop_assert_ne!(action, &Action::Keep, "{}", leaf);
            } else if !damages.contains_key(&leaf) && damaged_roots.is_empty() {
                prop_assert_eq!(action, &Action::Keep, "{}", leaf);
            }
        }

        let unreadable: Vec<Item> =
            damages.iter().filter(|(_, d)| d.unreadable()).map(|(i, _)| *i).collect();
        match Pki::from_secret_data(&existing) {
            Ok(_) => prop_assert!(unreadable.is_empty(), "{:?} loaded", unreadable),
            Err(PkiError::SecretData { item, reason }) => {
                prop_assert!(damages.contains_key(&item), "{} was not damaged: {}", item, reason);
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
    }

    /// Secrets of nothing but garbage, any of them: no panic, and since no root can be read (or
    /// is there), every root is reported and nothing is planned. Nothing at all is a first
    /// creation.
    #[test]
    fn garbage_secrets_leave_every_root_unavailable(
        existing in prop::collection::btree_map(
            prop::sample::select(Item::ALL.to_vec()),
            garbage_data(),
            0..6,
        ),
        now in now(),
    ) {
        let planned = pki::plan(&fixture_inputs(), &existing, now);
        if existing.is_empty() {
            let plan = planned.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(plan.actions().iter().all(|(_, a)| **a == Action::Issue));
            return Ok(());
        }
        let Err(PkiError::RootsUnavailable(problems)) = planned else {
            return Err(TestCaseError::fail(format!("{:?}", planned.map(|p| p.to_generate()))));
        };
        let reported: Vec<Item> = problems.iter().map(|p| p.item).collect();
        prop_assert_eq!(reported, roots().collect::<Vec<_>>());
        for p in &problems {
            let missing = matches!(p.defect, RootDefect::Missing { .. });
            prop_assert_eq!(missing, !existing.contains_key(&p.item), "{}", p);
        }
        prop_assert!(Pki::from_secret_data(&existing).is_err());
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// Whatever inputs `plan` accepts (any names the API admits as certSANs, cluster domains,
    /// endpoints, IPv4 or IPv6 Service IPs) are issued, and planning again against what was
    /// issued keeps everything: the certificates say exactly what the inputs ask for.
    #[test]
    fn whatever_plan_accepts_is_issued_then_kept(
        name in "[a-z]([-a-z0-9]{0,45}[a-z0-9])?",
        namespace in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
        service_ip in prop_oneof![ip(false), Just("10.96.0.1".to_owned())],
        cluster_domain in domain(253, false),
        endpoint in prop::option::of(prop_oneof![ip(false), domain(253, false)]),
        sans in prop::collection::vec(
            prop_oneof![domain(253, false), ip(false), text(1, 253, false)],
            0..5,
        ),
    ) {
        let mut inputs = pki::PkiInputs::new(name, namespace, service_ip.parse().unwrap());
        inputs.tenant_cluster_domain = cluster_domain;
        inputs.endpoint_host = endpoint;
        inputs.extra_sans = sans;
        let Ok(plan) = pki::plan(&inputs, &ExistingSecrets::new(), t0()) else {
            return Err(TestCaseError::reject("inputs refused"));
        };
        let issued = pki::execute(plan, t0())
            .map_err(|e| TestCaseError::fail(format!("planned but not issued: {e}")))?
            .to_secret_data();
        let again = pki::plan(&inputs, &issued, t0() + time::Duration::days(1)).unwrap();
        prop_assert!(again.is_all_keep(), "{:?}", again.to_generate());
    }
}
