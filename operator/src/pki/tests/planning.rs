//! `plan`: never regenerate by accident, re-issue exactly what is due, refuse to replace roots.

use std::collections::BTreeMap;
use time::Duration;

use super::{days, differing, fresh, inputs, issue_all, leaves, plan_and_execute, t0};
use crate::pki::{
    Action, ExistingSecrets, Item, PkiError, PkiInputs, ReissueReason, RenewalWindow, RootDefect,
    San, TLS_CRT, TLS_KEY, Validity, execute, plan,
};

/// The items whose action is not `Keep`, with their actions.
fn changes(
    inputs: &PkiInputs,
    existing: &ExistingSecrets,
    now: time::OffsetDateTime,
) -> Vec<(Item, Action)> {
    plan(inputs, existing, now)
        .unwrap()
        .actions()
        .into_iter()
        .filter(|(_, action)| **action != Action::Keep)
        .map(|(item, action)| (item, action.clone()))
        .collect()
}

#[test]
fn first_creation_issues_everything() {
    let plan = plan(&inputs(), &BTreeMap::new(), t0()).unwrap();
    assert_eq!(plan.to_generate(), Item::ALL.to_vec());
    assert!(
        plan.actions()
            .iter()
            .all(|(_, action)| **action == Action::Issue)
    );
    assert!(plan.ca_renewals().is_empty());
}

#[test]
fn a_fresh_pki_plans_all_keep_and_executing_it_changes_nothing() {
    // The no-regeneration rule.
    let (_, data) = fresh();
    for now in [t0(), t0() + days(1), t0() + days(200)] {
        let plan = plan(&inputs(), &data, now).unwrap();
        assert!(plan.is_all_keep(), "{now}: {:?}", plan.actions());
        assert!(plan.ca_renewals().is_empty());
        let again = execute(plan, now).unwrap();
        assert_eq!(
            again.to_secret_data(),
            data,
            "executing an all-keep plan is a no-op"
        );
        assert!(again.changed_secrets(&data).is_empty());
    }
}

#[test]
fn loading_from_secret_data_and_planning_again_is_still_all_keep() {
    let (_, data) = fresh();
    // Through the strict loader and back, and through a second plan/execute round.
    let reloaded = crate::pki::Pki::from_secret_data(&data)
        .unwrap()
        .to_secret_data();
    assert!(plan(&inputs(), &reloaded, t0()).unwrap().is_all_keep());
    let second = plan_and_execute(&inputs(), &reloaded, t0() + days(3));
    assert_eq!(second, data);
    assert!(
        plan(&inputs(), &second, t0() + days(3))
            .unwrap()
            .is_all_keep()
    );
}

#[test]
fn a_changed_extra_san_reissues_only_the_apiserver_cert() {
    let (_, data) = fresh();
    let mut changed = inputs();
    changed.extra_sans = vec!["203.0.113.7".to_owned(), "api2.demo.example".to_owned()];
    let later = t0() + days(10);
    assert_eq!(
        changes(&changed, &data, later),
        [(
            Item::ApiserverCert,
            Action::Reissue(ReissueReason::SansChanged {
                added: vec![San::Dns("api2.demo.example".to_owned())],
                removed: vec![San::Dns("api.demo.example".to_owned())],
            })
        )]
    );
    let after = plan_and_execute(&changed, &data, later);
    assert_eq!(differing(&data, &after), [Item::ApiserverCert]);
    assert!(plan(&changed, &after, later).unwrap().is_all_keep());
}

#[test]
fn a_new_endpoint_host_reissues_only_the_apiserver_cert() {
    let (_, data) = fresh();
    let mut changed = inputs();
    changed.endpoint_host = Some("198.51.100.20".to_owned());
    let items: Vec<Item> = changes(&changed, &data, t0())
        .into_iter()
        .map(|(item, _)| item)
        .collect();
    assert_eq!(items, [Item::ApiserverCert]);
}

#[test]
fn a_leaf_in_its_renewal_window_is_reissued_and_nothing_else() {
    let inputs = inputs();
    let (_, issued_at_t0) = fresh();
    // Day 200: every leaf but the scheduler's is lost and issued again, so only the scheduler's
    // cert is still the one from t0.
    let mut partial: ExistingSecrets = issued_at_t0.clone();
    partial.retain(|item, _| item.is_root() || *item == Item::SchedulerClient);
    let day_200 = plan_and_execute(&inputs, &partial, t0() + days(200));
    // Day 250: past two-thirds of the scheduler cert's year (243.3 days), not of the others'.
    let day_250 = t0() + days(250);
    let changes = changes(&inputs, &day_200, day_250);
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (item, action) = &changes[0];
    assert_eq!(*item, Item::SchedulerClient);
    let Action::Reissue(ReissueReason::InRenewalWindow {
        renew_at,
        not_after,
    }) = action
    else {
        panic!("{action:?}");
    };
    assert_eq!(*not_after, t0() + days(365));
    assert!(
        *renew_at > t0() + days(243) && *renew_at < t0() + days(244),
        "{renew_at}"
    );
    let day_250_data = plan_and_execute(&inputs, &day_200, day_250);
    assert_eq!(differing(&day_200, &day_250_data), [Item::SchedulerClient]);
    assert!(plan(&inputs, &day_250_data, day_250).unwrap().is_all_keep());
}

#[test]
fn when_every_leaf_is_due_the_cas_and_sa_key_are_still_kept() {
    let (_, data) = fresh();
    let changes = changes(&inputs(), &data, t0() + days(400));
    let items: Vec<Item> = changes.iter().map(|(item, _)| *item).collect();
    assert_eq!(items, leaves().collect::<Vec<_>>());
    assert!(changes.iter().all(|(_, action)| matches!(
        action,
        Action::Reissue(ReissueReason::InRenewalWindow { .. })
    )));
}

#[test]
fn a_renewal_window_before_expiry_is_honoured() {
    let mut inputs = inputs();
    inputs.validity = Validity {
        ca: days(3650),
        leaf: days(90),
        renewal: RenewalWindow::BeforeExpiry(days(30)),
    };
    let data = issue_all(&inputs, t0()).to_secret_data();
    assert!(plan(&inputs, &data, t0() + days(59)).unwrap().is_all_keep());
    assert_eq!(
        plan(&inputs, &data, t0() + days(61)).unwrap().to_generate(),
        leaves().collect::<Vec<_>>()
    );
}

#[test]
fn a_ca_in_its_renewal_window_is_reported_not_rotated() {
    let mut inputs = inputs();
    inputs.validity = Validity {
        ca: days(30),
        leaf: days(30),
        renewal: RenewalWindow::default(),
    };
    let (_, first) = {
        let pki = issue_all(&inputs, t0());
        let data = pki.to_secret_data();
        (pki, data)
    };
    // Day 20: the leaves are replaced (lost), the CAs stay from day 0.
    let mut roots_only = first.clone();
    roots_only.retain(|item, _| item.is_root());
    let day_20 = plan_and_execute(&inputs, &roots_only, t0() + days(20));
    // Day 21: the CAs are past two-thirds of their 30 days, the day-20 leaves are not.
    let plan = plan(&inputs, &day_20, t0() + days(21)).unwrap();
    assert!(plan.is_all_keep(), "{:?}", plan.actions());
    let due: Vec<Item> = plan.ca_renewals().iter().map(|r| r.item).collect();
    assert_eq!(due, [Item::Ca, Item::FrontProxyCa, Item::EtcdCa]);
    assert!(
        plan.ca_renewals()
            .iter()
            .all(|r| !r.expired && r.not_after == t0() + days(30))
    );
    // Even expired, a CA is reported, never replaced.
    let expired = crate::pki::plan(&inputs, &day_20, t0() + days(31)).unwrap();
    assert!(expired.ca_renewals().iter().all(|r| r.expired));
    assert!(expired.to_generate().iter().all(|item| !item.is_root()));
}

fn root_problems(result: Result<crate::pki::Plan, PkiError>) -> Vec<(Item, RootDefect)> {
    match result {
        Err(PkiError::RootsUnavailable(problems)) => {
            problems.into_iter().map(|p| (p.item, p.defect)).collect()
        }
        other => panic!("expected RootsUnavailable, got {other:?}"),
    }
}

#[test]
fn a_missing_ca_with_leaves_present_is_an_error_and_nothing_is_generated() {
    let (_, mut data) = fresh();
    data.remove(&Item::Ca);
    let result = plan(&inputs(), &data, t0());
    // No plan exists, so `execute` — the only function that generates keys — cannot run.
    let err = result.as_ref().unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`demo-ca`"), "{message}");
    assert!(
        message.contains("restore the Secret from backup"),
        "{message}"
    );
    assert!(message.contains("explicitly accept a new one"), "{message}");
    let problems = root_problems(result);
    assert_eq!(problems.len(), 1);
    let (item, RootDefect::Missing { present }) = &problems[0] else {
        panic!("{problems:?}");
    };
    assert_eq!(*item, Item::Ca);
    assert_eq!(present.len(), 13);
    assert!(present.contains(&"demo-apiserver-cert".to_owned()));
}

#[test]
fn a_missing_sa_key_with_others_present_is_an_error() {
    let (_, mut data) = fresh();
    data.remove(&Item::ServiceAccount);
    let problems = root_problems(plan(&inputs(), &data, t0()));
    assert!(matches!(
        problems.as_slice(),
        [(Item::ServiceAccount, RootDefect::Missing { .. })]
    ));
    // A single surviving leaf is enough to refuse new roots.
    let (_, fresh_data) = fresh();
    let only_admin: ExistingSecrets = fresh_data
        .into_iter()
        .filter(|(item, _)| *item == Item::AdminClient)
        .collect();
    let problems = root_problems(plan(&inputs(), &only_admin, t0()));
    let items: Vec<Item> = problems.iter().map(|(item, _)| *item).collect();
    assert_eq!(
        items,
        [
            Item::Ca,
            Item::FrontProxyCa,
            Item::EtcdCa,
            Item::ServiceAccount
        ]
    );
}

#[test]
fn a_garbage_or_mismatched_ca_secret_is_an_error() {
    let (_, data) = fresh();
    let mut garbage = data.clone();
    garbage
        .get_mut(&Item::Ca)
        .unwrap()
        .insert(TLS_CRT.to_owned(), b"garbage".to_vec());
    let problems = root_problems(plan(&inputs(), &garbage, t0()));
    assert!(
        matches!(problems.as_slice(), [(Item::Ca, RootDefect::Unusable(_))]),
        "{problems:?}"
    );

    let mut mismatched = data.clone();
    let other_key = data[&Item::FrontProxyCa][TLS_KEY].clone();
    mismatched
        .get_mut(&Item::EtcdCa)
        .unwrap()
        .insert(TLS_KEY.to_owned(), other_key);
    let problems = root_problems(plan(&inputs(), &mismatched, t0()));
    let [(Item::EtcdCa, RootDefect::Unusable(reason))] = problems.as_slice() else {
        panic!("{problems:?}");
    };
    assert!(reason.contains("does not match"), "{reason}");

    let mut not_a_ca = data.clone();
    let leaf = data[&Item::AdminClient].clone();
    not_a_ca.insert(Item::FrontProxyCa, leaf);
    let problems = root_problems(plan(&inputs(), &not_a_ca, t0()));
    assert!(matches!(
        problems.as_slice(),
        [(Item::FrontProxyCa, RootDefect::Unusable(_))]
    ));

    let mut no_key = data.clone();
    no_key.get_mut(&Item::ServiceAccount).unwrap().clear();
    let problems = root_problems(plan(&inputs(), &no_key, t0()));
    assert!(matches!(
        problems.as_slice(),
        [(Item::ServiceAccount, RootDefect::Unusable(_))]
    ));
}

#[test]
fn an_explicitly_accepted_new_ca_reissues_exactly_what_it_signed() {
    let (_, mut data) = fresh();
    data.remove(&Item::EtcdCa);
    let mut accepting = inputs();
    accepting.accept_new_roots.insert(Item::EtcdCa);
    let changes = changes(&accepting, &data, t0());
    let items: Vec<Item> = changes.iter().map(|(item, _)| *item).collect();
    assert_eq!(
        items,
        [
            Item::EtcdCa,
            Item::EtcdServer,
            Item::EtcdPeer,
            Item::ApiserverEtcdClient
        ]
    );
    assert!(matches!(
        changes[0].1,
        Action::Reissue(ReissueReason::ReplacementAccepted(
            RootDefect::Missing { .. }
        ))
    ));
    assert!(
        changes[1..]
            .iter()
            .all(|(_, a)| *a == Action::Reissue(ReissueReason::IssuerReplaced))
    );
    // Accepting a root that is fine changes nothing.
    let (_, intact) = fresh();
    assert!(plan(&accepting, &intact, t0()).unwrap().is_all_keep());
}

#[test]
fn a_missing_leaf_alone_is_issued() {
    let (_, data) = fresh();
    let mut without_admin = data.clone();
    without_admin.remove(&Item::AdminClient);
    assert_eq!(
        changes(&inputs(), &without_admin, t0()),
        [(Item::AdminClient, Action::Issue)]
    );
    let after = plan_and_execute(&inputs(), &without_admin, t0());
    assert_eq!(differing(&data, &after), [Item::AdminClient]);
}

#[test]
fn an_unparsable_leaf_is_reissued() {
    let (_, mut data) = fresh();
    data.get_mut(&Item::EtcdServer).unwrap().insert(
        TLS_KEY.to_owned(),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
    );
    data.get_mut(&Item::EtcdPeer).unwrap().remove(TLS_CRT);
    let changes = changes(&inputs(), &data, t0());
    let items: Vec<Item> = changes.iter().map(|(item, _)| *item).collect();
    assert_eq!(items, [Item::EtcdServer, Item::EtcdPeer]);
    assert!(
        changes
            .iter()
            .all(|(_, a)| matches!(a, Action::Reissue(ReissueReason::Unparsable(_))))
    );
}

#[test]
fn a_leaf_not_signed_by_the_current_ca_is_reissued() {
    let (_, mut data) = fresh();
    let (_, other_pki) = fresh();
    data.insert(
        Item::ControllerManagerClient,
        other_pki[&Item::ControllerManagerClient].clone(),
    );
    assert_eq!(
        changes(&inputs(), &data, t0()),
        [(
            Item::ControllerManagerClient,
            Action::Reissue(ReissueReason::NotSignedByCurrentCa)
        )]
    );
}

#[test]
fn a_leaf_with_a_foreign_key_is_reissued() {
    let (_, mut data) = fresh();
    let other_key = data[&Item::AdminClient][TLS_KEY].clone();
    data.get_mut(&Item::SuperAdminClient)
        .unwrap()
        .insert(TLS_KEY.to_owned(), other_key);
    assert_eq!(
        changes(&inputs(), &data, t0()),
        [(
            Item::SuperAdminClient,
            Action::Reissue(ReissueReason::KeyMismatch)
        )]
    );
}

#[test]
fn a_leaf_in_the_wrong_secret_is_reissued() {
    // The admin cert stored as the scheduler's: right CA, wrong subject.
    let (_, mut data) = fresh();
    let admin = data[&Item::AdminClient].clone();
    data.insert(Item::SchedulerClient, admin);
    assert_eq!(
        changes(&inputs(), &data, t0()),
        [(
            Item::SchedulerClient,
            Action::Reissue(ReissueReason::SubjectChanged)
        )]
    );
}

#[test]
fn a_stale_ca_crt_in_a_leaf_secret_is_rewritten_not_reissued() {
    let (_, mut data) = fresh();
    data.get_mut(&Item::FrontProxyClient)
        .unwrap()
        .insert(crate::pki::CA_CRT.to_owned(), b"old".to_vec());
    let plan = plan(&inputs(), &data, t0()).unwrap();
    assert!(plan.is_all_keep());
    let pki = execute(plan, t0()).unwrap();
    assert_eq!(pki.changed_secrets(&data), [Item::FrontProxyClient]);
}

/// A ten-minute leaf lifetime (the shortest `spec.pki.certificateValidity`): issued valid from
/// five minutes back, due two-thirds through its fifteen minutes, so five minutes after issue;
/// `expiry` says when, and which certificate ends first. At that moment the leaves — and only
/// they — are re-issued, and the next renewal moves on.
#[test]
fn ten_minute_leaves_fall_due_five_minutes_after_issue_and_only_they_are_reissued() {
    let mut short = inputs();
    short.validity.leaf = Duration::minutes(10);
    short.validity.ca = Duration::hours(1);
    let first = issue_all(&short, t0());
    let expiry = first.expiry(short.validity.renewal);
    assert_eq!(expiry.next_renewal, Some(t0() + Duration::minutes(5)));
    let (item, not_after) = expiry.earliest.unwrap();
    assert!(!item.is_root(), "a leaf ends first, not {item}");
    assert_eq!(not_after, t0() + Duration::minutes(10));
    let data = first.to_secret_data();
    let before = plan_and_execute(
        &short,
        &data,
        t0() + Duration::minutes(5) - Duration::SECOND,
    );
    assert!(differing(&data, &before).is_empty());
    let due = t0() + Duration::minutes(5);
    let after = plan_and_execute(&short, &data, due);
    let renewed: Vec<Item> = leaves().collect();
    assert_eq!(differing(&data, &after), renewed);
    let again = execute(plan(&short, &after, due).unwrap(), due).unwrap();
    assert_eq!(
        again.expiry(short.validity.renewal).next_renewal,
        Some(due + Duration::minutes(5))
    );
}

/// A leaf re-issued late in its CA's life ends with the CA, not after it; and the CA, due, is
/// reported (kept, never replaced).
#[test]
fn a_leaf_never_outlives_its_ca_and_a_due_ca_is_reported_not_replaced() {
    let mut short = inputs();
    short.validity.leaf = Duration::minutes(30);
    short.validity.ca = Duration::hours(1);
    let data = issue_all(&short, t0()).to_secret_data();
    let late = t0() + Duration::minutes(45);
    let plan = plan(&short, &data, late).unwrap();
    let due: Vec<Item> = plan.ca_renewals().iter().map(|r| r.item).collect();
    assert_eq!(due, [Item::Ca, Item::FrontProxyCa, Item::EtcdCa]);
    let pki = execute(plan, late).unwrap();
    for item in leaves() {
        let leaf = pki.cert(item).unwrap();
        let ca = pki.issuer_of(item).unwrap();
        assert!(leaf.not_after() <= ca.not_after(), "{item} outlives its CA");
    }
    for ca in [Item::Ca, Item::FrontProxyCa, Item::EtcdCa] {
        assert_eq!(pki.to_secret_data()[&ca], data[&ca], "{ca} was replaced");
    }
}
