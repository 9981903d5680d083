//! The staged CA rotation: trust first, then signing, then retiring; its state kept in the CA
//! Secrets; the chains that let a client trusting only the old CA verify the new one's leaves.

use time::Duration;

use super::{fresh, inputs, leaves, reread, rotate, t0};
use crate::pki::inspect::{inspect, is_signed_by, pem_to_der, spki_der};
use crate::pki::{
    Action, CA_CRT, CROSS_CRT, CaItem, Item, ItemKind, NEXT_CRT, Pki, ReissueReason, RotationPhase,
    RotationRequest, RotationStep, TLS_CRT, decide_rotation, execute, plan,
};

const DAY: Duration = Duration::days(1);

/// The step each CA decides on (they move together), carried out and read back.
fn step_all(
    pki: &mut Pki,
    request: RotationRequest<'_>,
    settled: Option<time::OffsetDateTime>,
    now: time::OffsetDateTime,
) -> Option<RotationStep> {
    let mut taken = None;
    for ca in CaItem::ALL {
        let step = decide_rotation(pki.ca_rotation(ca).stage(), request, settled, now, DAY);
        if let Some(step) = &step {
            pki.rotate_ca(ca, step, &inputs(), now).unwrap();
        }
        assert!(taken.is_none() || taken == step, "the CAs moved apart");
        taken = step;
    }
    *pki = reread(pki);
    taken
}

fn bundle(pki: &Pki, ca: CaItem) -> Vec<Vec<u8>> {
    pki.trust_bundle(ca)
}

fn chain(pki: &Pki, item: Item) -> Vec<Vec<u8>> {
    let data = pki.secret_data(item);
    pem::parse_many(&data[TLS_CRT])
        .unwrap()
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect()
}

fn issuer(item: Item) -> CaItem {
    match item.kind() {
        ItemKind::Leaf { issuer } => issuer,
        _ => unreachable!(),
    }
}

/// The next pass: plan and execute against what the Secrets hold at `now`.
fn next_pass(pki: &Pki, now: time::OffsetDateTime) -> (Pki, Vec<(Item, Action)>) {
    let plan = plan(&inputs(), &pki.to_secret_data(), now).unwrap();
    let actions = plan
        .actions()
        .into_iter()
        .map(|(item, action)| (item, action.clone()))
        .collect();
    (execute(plan, now).unwrap(), actions)
}

#[test]
fn a_ca_rotation_trusts_the_new_cas_first_signs_with_them_next_and_drops_the_old_ones_last() {
    let (mut pki, _) = fresh();
    let old = CaItem::ALL.map(|ca| pki.cert(ca.item()).unwrap().cert_der().to_vec());
    let minute = Duration::minutes(1);

    // Nothing asked, nothing done; asked: new CAs, trusted only.
    assert_eq!(
        step_all(&mut pki, RotationRequest::default(), Some(t0()), t0()),
        None
    );
    let start = step_all(&mut pki, rotate("r1"), None, t0());
    assert_eq!(start, Some(RotationStep::Start("r1".to_owned())));
    let mut new = Vec::new();
    for (i, ca) in CaItem::ALL.into_iter().enumerate() {
        assert_eq!(pki.ca_rotation(ca).phase(), RotationPhase::Preparing);
        assert_eq!(
            pki.cert(ca.item()).unwrap().cert_der(),
            old[i],
            "the old CA still signs"
        );
        let trusted = bundle(&pki, ca);
        assert_eq!(trusted.len(), 2, "{ca:?}: old and new trusted");
        assert_eq!(trusted[0], old[i]);
        assert_ne!(trusted[1], old[i]);
        new.push(trusted[1].clone());
        // Its Secret holds the next CA with its key and the cross certificate.
        let data = pki.secret_data(ca.item());
        assert!(data.contains_key(NEXT_CRT) && data.contains_key(CROSS_CRT));
    }
    // Every leaf is kept, with the bundle as its `ca.crt` and no cross certificate yet.
    let (after_start, actions) = next_pass(&pki, t0() + minute);
    assert!(
        actions.iter().all(|(_, a)| *a == Action::Keep),
        "{actions:?}"
    );
    for item in leaves() {
        assert_eq!(chain(&after_start, item).len(), 1, "{item}");
        let ca_crt = after_start.secret_data(item)[CA_CRT].clone();
        assert_eq!(
            ca_crt,
            after_start.trust_bundle_pem(issuer(item)).into_bytes()
        );
    }
    pki = after_start;

    // The switch waits until the control plane runs with the bundles (and old pods stopped).
    assert_eq!(step_all(&mut pki, rotate("r1"), None, t0() + minute), None);
    let later = t0() + 2 * minute;
    assert_eq!(
        step_all(&mut pki, rotate("r1"), Some(later + minute), later),
        None
    );
    let switch = step_all(&mut pki, rotate("r1"), Some(later), later);
    assert_eq!(switch, Some(RotationStep::Switch));
    for (i, ca) in CaItem::ALL.into_iter().enumerate() {
        assert_eq!(pki.ca_rotation(ca).phase(), RotationPhase::Rotating);
        assert_eq!(
            pki.cert(ca.item()).unwrap().cert_der(),
            new[i],
            "the new CA signs"
        );
        assert_eq!(bundle(&pki, ca), vec![new[i].clone(), old[i].clone()]);
    }
    // The next pass re-issues every leaf by the new CA; each chain carries the new CA signed
    // by the old one, so a client that trusts only the old CA verifies it.
    let (rotated, actions) = next_pass(&pki, later + minute);
    for (item, action) in &actions {
        let expected = if item.is_root() {
            Action::Keep
        } else {
            Action::Reissue(ReissueReason::NotSignedByCurrentCa)
        };
        assert_eq!(*action, expected, "{item}");
    }
    for item in leaves() {
        let i = CaItem::ALL.iter().position(|c| *c == issuer(item)).unwrap();
        let chain = chain(&rotated, item);
        assert_eq!(chain.len(), 2, "{item}");
        assert!(
            is_signed_by(&chain[0], &new[i]),
            "{item} signed by the new CA"
        );
        let cross = &chain[1];
        assert!(
            is_signed_by(cross, &old[i]),
            "{item}: the cross cert is the old CA's"
        );
        assert_eq!(spki_der(cross).unwrap(), spki_der(&new[i]).unwrap());
        let (cross_info, new_info) = (inspect(cross).unwrap(), inspect(&new[i]).unwrap());
        assert_eq!(cross_info.subject_raw, new_info.subject_raw);
        assert_eq!(cross_info.usage, new_info.usage);
        assert!(cross_info.not_after <= inspect(&old[i]).unwrap().not_after);
        // Named apart from the old CA: its cross certificate is not self-issued.
        assert_ne!(cross_info.subject_raw, cross_info.issuer_raw, "{item}");
        assert!(
            new_info
                .common_name
                .as_deref()
                .is_some_and(|cn| cn.ends_with(" r1")),
            "{:?}",
            new_info.common_name
        );
    }
    pki = rotated;

    retire_after_the_rollout(pki, later, &new);
}

/// From Rotating: the old CAs are scheduled, retired on confirmation, and gone from every bundle.
fn retire_after_the_rollout(mut pki: Pki, later: time::OffsetDateTime, new: &[Vec<u8>]) {
    let minute = Duration::minutes(1);
    // The old CAs go the longest certificate lifetime after the switch's rollout, or when the
    // user confirms; not before the rollout is over.
    let rolled = later + 3 * minute;
    let schedule = step_all(&mut pki, rotate("r1"), Some(rolled), rolled + minute);
    assert_eq!(schedule, Some(RotationStep::Schedule(rolled + DAY)));
    for ca in CaItem::ALL {
        assert_eq!(pki.ca_rotation(ca).retire_after(), Some(rolled + DAY));
        assert_eq!(pki.ca_rotation(ca).phase(), RotationPhase::Rotating);
    }
    assert_eq!(
        step_all(&mut pki, rotate("r1"), Some(rolled), rolled + 2 * minute),
        None
    );
    let confirm = RotationRequest {
        rotate: Some("r1"),
        complete: Some("r1"),
    };
    let retire = step_all(&mut pki, confirm, Some(rolled), rolled + 2 * minute);
    assert_eq!(retire, Some(RotationStep::Retire));
    for (i, ca) in CaItem::ALL.into_iter().enumerate() {
        assert_eq!(pki.ca_rotation(ca).phase(), RotationPhase::Settled);
        assert_eq!(
            bundle(&pki, ca),
            vec![new[i].clone()],
            "only the new CA is trusted"
        );
        let data = pki.secret_data(ca.item());
        assert!(!data.contains_key(NEXT_CRT));
        assert_eq!(pem_to_der(&data[CA_CRT]).unwrap(), new[i]);
    }
    // Nothing is re-issued by the retirement; the chains keep the cross certificate (clients
    // that trust only the old CA still verify the servers; certificates of the old CA are
    // refused, as no bundle holds it).
    let (done, actions) = next_pass(&pki, rolled + 3 * minute);
    assert!(
        actions.iter().all(|(_, a)| *a == Action::Keep),
        "{actions:?}"
    );
    for item in leaves() {
        assert_eq!(chain(&done, item).len(), 2, "{item}");
        let ca_crt = done.secret_data(item)[CA_CRT].clone();
        assert_eq!(pem::parse_many(&ca_crt).unwrap().len(), 1, "{item}");
    }
    // The same name does not start another one; a new one does.
    let mut pki = done;
    assert_eq!(
        step_all(&mut pki, rotate("r1"), Some(rolled), rolled + DAY),
        None
    );
    assert_eq!(
        step_all(&mut pki, rotate("r2"), Some(rolled), rolled + DAY),
        Some(RotationStep::Start("r2".to_owned()))
    );
}

#[test]
fn the_old_cas_go_on_their_own_once_everything_they_signed_has_expired() {
    let (mut pki, _) = fresh();
    step_all(&mut pki, rotate("r1"), None, t0());
    step_all(&mut pki, rotate("r1"), Some(t0()), t0());
    let schedule = step_all(&mut pki, rotate("r1"), Some(t0()), t0());
    assert_eq!(schedule, Some(RotationStep::Schedule(t0() + DAY)));
    let almost = t0() + DAY - Duration::seconds(1);
    assert_eq!(step_all(&mut pki, rotate("r1"), Some(t0()), almost), None);
    // Not while a rollout is under way (a later change of the control plane).
    assert_eq!(step_all(&mut pki, rotate("r1"), None, t0() + DAY), None);
    let retire = step_all(&mut pki, rotate("r1"), Some(t0()), t0() + DAY);
    assert_eq!(retire, Some(RotationStep::Retire));
}

#[test]
fn a_rotation_cut_off_after_one_ca_catches_up_and_the_cas_switch_together() {
    let (mut pki, _) = fresh();
    // The operator wrote the cluster CA's Secret and stopped.
    pki.rotate_ca(
        CaItem::Cluster,
        &RotationStep::Start("r1".into()),
        &inputs(),
        t0(),
    )
    .unwrap();
    let mut pki = reread(&pki);
    let steps: Vec<_> = CaItem::ALL
        .map(|ca| decide_rotation(pki.ca_rotation(ca).stage(), rotate("r1"), None, t0(), DAY))
        .into();
    assert_eq!(
        steps,
        vec![
            None,
            Some(RotationStep::Start("r1".into())),
            Some(RotationStep::Start("r1".into()))
        ]
    );
    for (ca, step) in CaItem::ALL.into_iter().zip(&steps) {
        if let Some(step) = step {
            pki.rotate_ca(ca, step, &inputs(), t0()).unwrap();
        }
    }
    pki = reread(&pki);
    let switch = step_all(&mut pki, rotate("r1"), Some(t0()), t0());
    assert_eq!(switch, Some(RotationStep::Switch));
}

#[test]
fn a_next_ca_that_cannot_be_read_is_no_rotation_and_a_garbled_bundle_trusts_only_the_signer() {
    let (pki, _) = fresh();
    let mut secrets = pki.to_secret_data();
    let ca = secrets.get_mut(&Item::Ca).unwrap();
    ca.insert(NEXT_CRT.to_owned(), b"not a certificate".to_vec());
    ca.insert(CA_CRT.to_owned(), b"garbage".to_vec());
    let read = Pki::from_secret_data(&secrets).unwrap();
    assert_eq!(
        read.ca_rotation(CaItem::Cluster).phase(),
        RotationPhase::Settled
    );
    assert_eq!(
        read.trust_bundle(CaItem::Cluster),
        vec![pki.cert(Item::Ca).unwrap().cert_der().to_vec()]
    );
}

#[test]
fn a_lost_ca_replaced_after_a_rotation_keeps_its_name_and_starts_none() {
    let (mut pki, _) = fresh();
    for request in [rotate("r1"), rotate("r1")] {
        step_all(&mut pki, request, None, t0());
        step_all(&mut pki, request, Some(t0()), t0());
    }
    let mut secrets = pki.to_secret_data();
    secrets.remove(&Item::Ca);
    let mut accepting = inputs();
    accepting.accept_new_roots.insert(Item::Ca);
    let replaced = execute(plan(&accepting, &secrets, t0()).unwrap(), t0()).unwrap();
    assert_eq!(replaced.ca_rotation(CaItem::Cluster).id(), Some("r1"));
    let stage = replaced.ca_rotation(CaItem::Cluster).stage();
    assert_eq!(
        decide_rotation(stage, rotate("r1"), Some(t0()), t0(), DAY),
        None
    );
}
