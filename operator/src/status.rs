//! Pure status logic: conditions (a list-map keyed by type) whose `lastTransitionTime` only moves
//! when their status does, the phase that follows from them, and the rule that decides whether a
//! status write is needed at all — a reconcile of an unchanged object must write nothing.

use hostplane_api::v1alpha1::{Phase, TenantControlPlaneStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types the operator writes, in the order `kubectl describe` shows them.
pub const PKI_READY: &str = "PKIReady";
pub const ETCD_READY: &str = "EtcdReady";
pub const API_SERVER_READY: &str = "APIServerReady";
pub const CONTROLLERS_READY: &str = "ControllersReady";
pub const ADDONS_READY: &str = "AddonsReady";
pub const READY: &str = "Ready";
/// Present only when `spec.backup` is set: whether the last backup Job succeeded.
pub const BACKUP_READY: &str = "BackupReady";
/// Present only while the TCP carries `hostplane.dev/paused: "true"`.
pub const PAUSED: &str = "Paused";

/// One observation: a condition as the reconcile sees it now, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Merges `observed` into `current`: a condition whose status is unchanged keeps its
/// `lastTransitionTime`; conditions of other types (someone else's) are kept as they are.
pub fn merge_conditions(
    current: &[Condition],
    observed: &[Observed],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = current
        .iter()
        .filter(|c| !observed.iter().any(|o| o.type_ == c.type_))
        .cloned()
        .collect();
    for o in observed {
        let status = if o.status { "True" } else { "False" };
        let previous = current.iter().find(|c| c.type_ == o.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Time(now),
        };
        out.push(Condition {
            type_: o.type_.to_owned(),
            status: status.to_owned(),
            reason: o.reason.clone(),
            message: o.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by_key(|c| order(&c.type_));
    out
}

fn order(type_: &str) -> usize {
    [
        PKI_READY,
        ETCD_READY,
        API_SERVER_READY,
        CONTROLLERS_READY,
        READY,
        BACKUP_READY,
    ]
    .iter()
    .position(|t| *t == type_)
    .unwrap_or(usize::MAX)
}

/// The phase the conditions imply when nothing else (upgrade, rotation, hibernation) is going on.
/// `failed` marks an error that retrying cannot fix (e.g. a lost CA): the user must act.
pub fn phase(ready: bool, failed: bool) -> Phase {
    if ready {
        Phase::Ready
    } else if failed {
        Phase::Failed
    } else {
        Phase::Provisioning
    }
}

/// Whether `new` differs from `old` in anything but timestamps — the only case that is written.
pub fn needs_write(old: Option<&TenantControlPlaneStatus>, new: &TenantControlPlaneStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &TenantControlPlaneStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(old) != strip(new)
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: `new` itself, with a `null` for
/// every field of an object that `old` has and `new` has not (a merge patch leaves a field out of
/// the patch as it is: a status field that went away, such as a rotation's
/// `oldCaTrustedUntil`, would stay).
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in new {
                let merged = old
                    .get(key)
                    .map_or_else(|| value.clone(), |o| merge_patch(o, value));
                patch.insert(key.clone(), merged);
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_gone_from_the_status_is_removed_by_the_patch() {
        let old = serde_json::json!({"phase": "Ready", "caRotation": {"id": "r1",
            "phase": "Rotating", "oldCaTrustedUntil": "2026-12-07T05:00:00Z"},
            "conditions": [{"type": "Ready"}, {"type": "PKIReady"}], "version": "1.36.3"});
        let new = serde_json::json!({"phase": "Ready", "caRotation": {"id": "r1",
            "phase": "Completed"}, "conditions": [{"type": "Ready"}]});
        let patch = merge_patch(&old, &new);
        assert_eq!(
            patch,
            serde_json::json!({"phase": "Ready", "caRotation": {"id": "r1",
                "phase": "Completed", "oldCaTrustedUntil": null},
                "conditions": [{"type": "Ready"}], "version": null})
        );
        assert_eq!(merge_patch(&serde_json::Value::Null, &new), new);
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time() {
        let first = merge_conditions(
            &[],
            &[Observed::new(READY, false, "Provisioning", "etcd starting")],
            Some(1),
            t(100),
        );
        let second = merge_conditions(
            &first,
            &[Observed::new(
                READY,
                false,
                "Provisioning",
                "apiserver starting",
            )],
            Some(1),
            t(200),
        );
        assert_eq!(second[0].last_transition_time, Time(t(100)));
        assert_eq!(second[0].message, "apiserver starting");

        let third = merge_conditions(
            &second,
            &[Observed::new(READY, true, "Ready", "serving")],
            Some(1),
            t(300),
        );
        assert_eq!(third[0].status, "True");
        assert_eq!(third[0].last_transition_time, Time(t(300)));
    }

    #[test]
    fn conditions_of_other_types_are_kept_and_order_is_stable() {
        let foreign = Condition {
            type_: "SomeoneElses".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(t(1)),
        };
        let merged = merge_conditions(
            std::slice::from_ref(&foreign),
            &[
                Observed::new(READY, false, "R", ""),
                Observed::new(PKI_READY, true, "Issued", ""),
            ],
            Some(2),
            t(5),
        );
        let types: Vec<_> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [PKI_READY, READY, "SomeoneElses"]);
        assert_eq!(merged[2], foreign);
    }

    #[test]
    fn only_real_changes_need_a_write() {
        let observed = [Observed::new(READY, true, "Ready", "serving")];
        let a = TenantControlPlaneStatus {
            conditions: merge_conditions(&[], &observed, Some(1), t(10)),
            phase: Some(Phase::Ready),
            ..Default::default()
        };
        // Same observation later: only timestamps could differ, so nothing is written.
        let mut b = a.clone();
        b.conditions = merge_conditions(&a.conditions, &observed, Some(1), t(99));
        assert!(!needs_write(Some(&a), &b));
        // A new message is a change.
        b.conditions = merge_conditions(
            &a.conditions,
            &[Observed::new(READY, true, "Ready", "serving, 2 replicas")],
            Some(1),
            t(99),
        );
        assert!(needs_write(Some(&a), &b));
        assert!(needs_write(None, &a));
    }

    #[test]
    fn phase_follows_readiness_and_failure() {
        assert_eq!(phase(true, false), Phase::Ready);
        assert_eq!(phase(false, true), Phase::Failed);
        assert_eq!(phase(false, false), Phase::Provisioning);
    }
}
