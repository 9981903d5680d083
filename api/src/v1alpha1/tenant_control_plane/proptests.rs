//! Property-based tests: random and adversarial specs (garbage versions, huge and negative
//! numbers, odd CIDRs, unicode, empty and over-long strings) through the schema defaults, every CEL
//! rule (kube-cel, `validate_cel`) and serde.
//!
//! The generated specs are well-typed (the API server checks types before it runs a CEL rule) but
//! otherwise unconstrained; the OpenAPI bounds kube-cel does not evaluate (maxLength, minimum,
//! enum, ...) are checked by `within_openapi_bounds` below where a property needs a spec the API
//! server would store. `PROPTEST_CASES=<n>` runs more cases than the defaults here.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::cel::{ErrorKind, ValidationErrors, apply_defaults};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

#[path = "strategies.rs"]
mod strategies;

use strategies::{config, size, spec, spec_schema, ttl, validate, version, within_openapi_bounds};

// ---------------------------------------------------------------------------------------------
// oracles
// ---------------------------------------------------------------------------------------------

/// Every rule that fails, as `(field path, message)`, sorted. A rule that cannot be evaluated
/// (anything but a plain `false`) fails the property: every rule is guarded so that no well-typed
/// value makes it error out, which the API server would report as an internal error.
fn failures(spec: &Value, old: Option<&Value>) -> Result<Vec<(String, String)>, TestCaseError> {
    let mut out = Vec::new();
    if let Err(errors) = validate(spec, old) {
        for e in &errors {
            prop_assert_eq!(
                &e.kind,
                &ErrorKind::ValidationFailure,
                "rule `{}` did not evaluate on {}: {}",
                e.rule,
                spec,
                e
            );
            prop_assert!(!e.message.is_empty() && !e.field_path.is_empty(), "{e}");
            out.push((e.field_path.clone(), e.message.clone()));
        }
    }
    out.sort();
    Ok(out)
}

/// `^1[.](35|36)[.](0|[1-9][0-9]{0,3})$`, written without a regex engine.
fn version_oracle(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    let [major, minor, patch] = parts.as_slice() else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    *major == "1"
        && SUPPORTED_MINORS.iter().any(|m| m.to_string() == *minor)
        && digits(patch)
        && patch.len() <= 4
        && (*patch == "0" || !patch.starts_with('0'))
}

/// The spec with `apply_defaults`' numbers-for-quantities written as the strings serde makes of
/// them (`Quantity` is a string; the API server keeps what was sent).
fn quantities_as_strings(value: &mut Value) {
    for pointer in ["/etcd/managed/storage/size", "/backup/storage/size"] {
        if let Some(size) = value.pointer_mut(pointer)
            && let Some(n) = size.as_number()
        {
            *size = Value::from(n.to_string());
        }
    }
    for parent in [
        "/etcd/managed",
        "/controlPlane/apiServer",
        "/controlPlane/controllerManager",
        "/controlPlane/scheduler",
    ] {
        for list in ["requests", "limits"] {
            if let Some(Value::Object(map)) =
                value.pointer_mut(&format!("{parent}/resources/{list}"))
            {
                for q in map.values_mut() {
                    if let Some(n) = q.as_number() {
                        *q = Value::from(n.to_string());
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(96))]

    /// Any well-typed spec: every rule evaluates to true or false (none errors), each refusal
    /// names a field and says why, and the same spec written again unchanged (an update to itself)
    /// is refused by exactly the rules that refuse it on creation: a transition rule never fires
    /// on a field that did not change.
    #[test]
    fn every_rule_evaluates_and_an_unchanged_update_adds_no_refusal(
        spec in prop_oneof![spec(false), spec(true)],
    ) {
        let created = failures(&spec, None)?;
        let updated = failures(&spec, Some(&spec))?;
        prop_assert_eq!(created, updated, "spec {}", spec);
    }

    /// Two unrelated specs as old and new: the transition rules evaluate (none errors) whatever
    /// the stored object holds, and an update never passes a rule its creation would fail.
    #[test]
    fn transition_rules_evaluate_against_any_stored_spec(old in spec(true), new in spec(true)) {
        let created = failures(&new, None)?;
        let updated = failures(&new, Some(&old))?;
        for refusal in &created {
            prop_assert!(
                updated.contains(refusal),
                "{:?} missing on update {} -> {}",
                refusal,
                old,
                new
            );
        }
    }

    /// A spec the API server would store (CEL and the OpenAPI bounds) is one the operator reads:
    /// it deserialises with or without the schema defaults to the same value (serde's defaults are
    /// the schema's), serialises back to exactly what was stored, round-trips through JSON and
    /// YAML, and passes every rule again when the operator writes it out.
    #[test]
    fn a_stored_spec_round_trips_unchanged(spec in spec(false)) {
        let schema = spec_schema();
        let defaulted = apply_defaults(schema, &spec);
        prop_assume!(within_openapi_bounds(schema, &defaulted));
        prop_assume!(failures(&spec, None)?.is_empty());

        let parsed: TenantControlPlaneSpec = serde_json::from_value(defaulted.clone())
            .map_err(|e| TestCaseError::fail(format!("{e}: {defaulted}")))?;
        let undefaulted: TenantControlPlaneSpec = serde_json::from_value(spec.clone())
            .map_err(|e| TestCaseError::fail(format!("{e}: {spec}")))?;
        prop_assert_eq!(&undefaulted, &parsed, "serde and schema defaults differ for {}", spec);

        let written = serde_json::to_value(&parsed).unwrap();
        // What serde leaves out: an empty list of hibernation schedules means none.
        let mut stored = defaulted.clone();
        quantities_as_strings(&mut stored);
        if stored.pointer("/hibernation/schedules") == Some(&json!([])) {
            stored["hibernation"].as_object_mut().unwrap().remove("schedules");
        }
        prop_assert_eq!(&written, &stored);
        prop_assert_eq!(&apply_defaults(schema, &written), &written, "defaults left to fill");
        let reread: TenantControlPlaneSpec = serde_json::from_value(written.clone()).unwrap();
        prop_assert_eq!(&reread, &parsed);
        let yaml = serde_yaml_ng::to_string(&parsed).unwrap();
        let reread: TenantControlPlaneSpec = serde_yaml_ng::from_str(&yaml).unwrap();
        prop_assert_eq!(&reread, &parsed);
        prop_assert!(failures(&written, None)?.is_empty(), "{}", written);
        prop_assert!(within_openapi_bounds(schema, &written));
    }

    /// The version rule accepts exactly `1.<supported minor>.<patch>`, whatever the string.
    #[test]
    fn the_version_rule_matches_its_definition(version in version(true)) {
        let spec = json!({"version": version});
        let refused = failures(&spec, None)?
            .contains(&("version".to_owned(), version_format_message()));
        prop_assert_eq!(refused, !version_oracle(&version), "version {:?}", version);
    }

    /// The operator reads `bootstrapTokenTTL` with `bootstrap_token_ttl_seconds`: it must not
    /// panic on any string, and (within maxLength) give a lifetime exactly when the CEL rules
    /// accept the value.
    #[test]
    fn the_token_ttl_reader_agrees_with_the_rules(ttl in ttl(true)) {
        let seconds = NodesSpec { bootstrap_token_ttl: ttl.clone() }.bootstrap_token_ttl_seconds();
        if let Some(s) = seconds {
            prop_assert!((15 * 60..=168 * 3600).contains(&s), "{:?} -> {}", ttl, s);
        }
        if ttl.chars().count() <= 6 {
            let spec = json!({"version": "1.36.3", "nodes": {"bootstrapTokenTTL": ttl}});
            let refused = failures(&spec, None)?
                .contains(&("nodes.bootstrapTokenTTL".to_owned(), MSG_TOKEN_TTL.to_owned()));
            prop_assert_eq!(refused, seconds.is_none(), "ttl {:?}", ttl);
        }
    }

    /// etcd storage size: a quantity that is not positive (or not a quantity, or absurdly large)
    /// is refused by its rule and never makes the evaluator fail; a serde Quantity reads them all.
    #[test]
    fn any_storage_size_is_decided_by_its_rule(size in size(true)) {
        let spec = json!({"version": "1.36.3", "etcd": {"managed": {"storage": {"size": size}}}});
        let refused = failures(&spec, None)?;
        prop_assert!(
            refused
                .iter()
                .all(|(path, message)| {
                    path == "etcd.managed.storage.size" && message == MSG_ETCD_SIZE
                }),
            "{:?}",
            refused
        );
        let parsed: Quantity = serde_json::from_value(size.clone()).unwrap();
        let leading_digit = parsed
            .0
            .trim_start_matches('+')
            .starts_with(|c: char| c.is_ascii_digit());
        if refused.is_empty() {
            prop_assert!(leading_digit, "{:?} accepted", size);
        }
    }
}

/// Each error as `(kind, field path, message)`, sorted.
fn decision(result: Result<(), ValidationErrors>) -> Vec<(String, String, String)> {
    let mut errors: Vec<_> = result
        .err()
        .iter()
        .flat_map(|errors| errors.iter())
        .map(|e| {
            (
                format!("{:?}", e.kind),
                e.field_path.clone(),
                e.message.clone(),
            )
        })
        .collect();
    errors.sort();
    errors
}

proptest! {
    #![proptest_config(config(6))]

    /// The rules compiled once per thread, which the properties above use, decide exactly as
    /// `validate_cel` (which generates and compiles the schema on every call), on creation and
    /// on update.
    #[test]
    fn compiled_rules_decide_as_validate_cel(
        old in spec(true),
        new in prop_oneof![spec(false), spec(true)],
    ) {
        for old in [None, Some(&old)] {
            prop_assert_eq!(
                decision(validate(&new, old)),
                decision(TenantControlPlaneSpec::validate_cel(&new, old)),
                "{} (old: {:?})", new, old
            );
        }
    }
}

/// What the properties found, kept as plain cases: `bootstrap_token_ttl_seconds` panicked on a
/// value ending in a multi-byte character (it split the string one byte before its end), and
/// read a leading zero or a `+` the CEL rules refuse as a valid lifetime.
#[test]
fn token_ttl_reader_regressions() {
    for ttl in [
        "水", "1é", "24水", "🦀", "020m", "015m", "+24h", "+15m", "0024h",
    ] {
        let nodes = NodesSpec {
            bootstrap_token_ttl: ttl.to_owned(),
        };
        assert_eq!(nodes.bootstrap_token_ttl_seconds(), None, "{ttl:?}");
    }
}
