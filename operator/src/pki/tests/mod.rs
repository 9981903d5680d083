//! Unit tests of the tenant PKI, with helpers shared by the files below.

mod ca_rotation;
mod issuing;
mod planning;
mod sa_rotation;
mod secret_data;

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::{ExistingSecrets, Item, Pki, PkiInputs, execute, plan};

/// A fixed "now" with whole seconds: 2026-05-28T20:26:40Z.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap()
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

fn inputs() -> PkiInputs {
    let mut inputs = PkiInputs::new("demo", "tenants", "10.96.0.1".parse().unwrap());
    inputs.tenant_cluster_domain = "tenant.local".to_owned();
    inputs.endpoint_host = Some("demo.example.com".to_owned());
    inputs.extra_sans = vec!["203.0.113.7".to_owned(), "API.Demo.Example".to_owned()];
    inputs
}

/// A request for the rotation `id`.
fn rotate(id: &str) -> super::RotationRequest<'_> {
    super::RotationRequest {
        rotate: Some(id),
        complete: None,
    }
}

/// The PKI as the next pass reads it back from its Secrets.
fn reread(pki: &Pki) -> Pki {
    Pki::from_secret_data(&pki.to_secret_data()).unwrap()
}

/// A complete PKI issued at `now` from nothing.
fn issue_all(inputs: &PkiInputs, now: OffsetDateTime) -> Pki {
    let plan = plan(inputs, &BTreeMap::new(), now).unwrap();
    execute(plan, now).unwrap()
}

/// A fresh PKI at `t0` and its Secret data.
fn fresh() -> (Pki, ExistingSecrets) {
    let pki = issue_all(&inputs(), t0());
    let data = pki.to_secret_data();
    (pki, data)
}

/// Plans and executes against `existing`, returning the new Secret data.
fn plan_and_execute(
    inputs: &PkiInputs,
    existing: &ExistingSecrets,
    now: OffsetDateTime,
) -> ExistingSecrets {
    execute(plan(inputs, existing, now).unwrap(), now)
        .unwrap()
        .to_secret_data()
}

fn x509(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn cert_der(pki: &Pki, item: Item) -> &[u8] {
    pki.cert(item).unwrap().cert_der()
}

fn leaves() -> impl Iterator<Item = Item> {
    Item::ALL.into_iter().filter(|item| !item.is_root())
}

/// The items whose Secret data differ between two snapshots.
fn differing(a: &ExistingSecrets, b: &ExistingSecrets) -> Vec<Item> {
    Item::ALL
        .into_iter()
        .filter(|item| a.get(item) != b.get(item))
        .collect()
}
