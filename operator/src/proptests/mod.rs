//! Property-based tests of the operator's pure code: random and adversarial TenantControlPlanes
//! through `Tenant::new`, the builders, the PKI planner (and Secrets of garbage bytes), the
//! hibernation and backup schedules, and the snapshot checks. Whatever the input, nothing panics
//! and a problem comes back as an error; each property also says what a right answer is.
//!
//! The specs come from the API crate's strategies (included below), which also emulate the API
//! server's admission (schema defaults, OpenAPI bounds, CEL rules). `PROPTEST_CASES=<n>` runs more
//! cases than the defaults here.

mod children;
mod pki_data;
mod schedules;
mod snapshots;

// The strategies' module reads these from its parent.
use hostplane_api::v1alpha1::{DEFAULT_SERVICE_CIDR, SUPPORTED_MINORS, TenantControlPlane};

#[path = "../../../api/src/v1alpha1/tenant_control_plane/strategies.rs"]
mod strategies;

use std::sync::LazyLock;

use time::OffsetDateTime;

use crate::pki::{self, ExistingSecrets, Pki, PkiInputs};

/// A fixed "now" with whole seconds: 2026-05-28T20:26:40Z.
fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap()
}

/// The inputs of the fixture PKI: tenant `t` in namespace `ns`.
fn fixture_inputs() -> PkiInputs {
    PkiInputs::new("t", "ns", "10.96.0.1".parse().unwrap())
}

/// A complete PKI issued once at `t0` (key generation is the slow part), as Secret data.
fn fixture_secrets() -> &'static ExistingSecrets {
    static SECRETS: LazyLock<ExistingSecrets> = LazyLock::new(|| {
        let plan = pki::plan(&fixture_inputs(), &ExistingSecrets::new(), t0()).unwrap();
        pki::execute(plan, t0()).unwrap().to_secret_data()
    });
    &SECRETS
}

/// The fixture PKI, read back from its Secret data.
fn fixture_pki() -> Pki {
    Pki::from_secret_data(fixture_secrets()).unwrap()
}
