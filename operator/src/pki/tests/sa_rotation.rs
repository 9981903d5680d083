//! The service-account key rotation: its steps, and its state kept in the Secret.

use time::Duration;

use super::{fresh, reread, rotate, t0};
use crate::pki::{
    ExistingSecrets, Item, NEXT_KEY, Pki, RETIRE_AFTER, ROTATION_ID, RotationPhase,
    RotationRequest, RotationStep, SA_KEY, VERIFY_PUB, decide_rotation, key_id,
};

const DAY: Duration = Duration::days(1);

fn step(pki: &mut Pki, change: &RotationStep) {
    pki.rotate_service_account(change).unwrap();
    *pki = reread(pki);
}

/// The API servers' rollout was over (and their old pods stopped) at this time.
#[allow(clippy::unnecessary_wraps)] // the argument `decide` takes
fn settled(minutes: i64) -> Option<time::OffsetDateTime> {
    Some(t0() + Duration::minutes(minutes))
}

#[test]
fn a_rotation_trusts_the_new_key_first_signs_with_it_next_and_drops_the_old_one_last() {
    let (mut pki, _) = fresh();
    let (old, accepted) = pki.sa_key_ids();
    assert_eq!(accepted, std::slice::from_ref(&old));
    let decide = |pki: &Pki, request, settled_at, now| {
        decide_rotation(pki.sa_rotation().stage(), request, settled_at, now, DAY)
    };
    // Nothing asked, nothing done; asked: a new key, trusted only.
    assert_eq!(
        decide(&pki, RotationRequest::default(), settled(0), t0()),
        None
    );
    let start = decide(&pki, rotate("r1"), None, t0()).unwrap();
    assert_eq!(start, RotationStep::Start("r1".to_owned()));
    step(&mut pki, &start);
    assert_eq!(pki.sa_rotation().phase(), RotationPhase::Preparing);
    let (signing, accepted) = pki.sa_key_ids();
    assert_eq!(signing, old, "the old key still signs");
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0], old);
    let new = accepted[1].clone();
    // The switch waits until every API server trusts the new key: their rollout is over...
    assert_eq!(decide(&pki, rotate("r1"), None, t0()), None);
    // ...and the old pods' grace period has passed.
    assert_eq!(decide(&pki, rotate("r1"), settled(1), t0()), None);
    let switch = decide(&pki, rotate("r1"), settled(0), t0()).unwrap();
    assert_eq!(switch, RotationStep::Switch);
    step(&mut pki, &switch);
    assert_eq!(pki.sa_rotation().phase(), RotationPhase::Rotating);
    assert_eq!(
        pki.sa_key_ids(),
        (new.clone(), vec![new.clone(), old.clone()])
    );
    // The old key's last token is signed when the last API server that signs with it stops:
    // only then is its time set, the longest token lifetime after that; nothing goes before,
    // not even when the user confirms.
    let confirm = |id| RotationRequest {
        rotate: Some("r1"),
        complete: Some(id),
    };
    assert_eq!(pki.sa_rotation().retire_after(), None);
    let later = t0() + Duration::minutes(5);
    assert_eq!(decide(&pki, confirm("r1"), None, later), None);
    assert_eq!(decide(&pki, rotate("r1"), settled(6), later), None);
    let schedule = decide(&pki, rotate("r1"), settled(4), later).unwrap();
    let until = t0() + Duration::minutes(4) + DAY;
    assert_eq!(schedule, RotationStep::Schedule(until));
    step(&mut pki, &schedule);
    assert_eq!(pki.sa_rotation().phase(), RotationPhase::Rotating);
    assert_eq!(pki.sa_rotation().retire_after(), Some(until));
    // The old key stays trusted until then...
    let almost = until - Duration::seconds(1);
    assert_eq!(decide(&pki, rotate("r1"), settled(4), almost), None);
    // ...or until the user confirms this rotation (not another one), once no API server rolls.
    assert_eq!(decide(&pki, confirm("r0"), settled(4), almost), None);
    assert_eq!(decide(&pki, confirm("r1"), None, later), None);
    assert_eq!(
        decide(&pki, confirm("r1"), settled(4), later),
        Some(RotationStep::Retire)
    );
    let retire = decide(&pki, rotate("r1"), settled(4), until).unwrap();
    assert_eq!(retire, RotationStep::Retire);
    step(&mut pki, &retire);
    assert_eq!(pki.sa_rotation().phase(), RotationPhase::Settled);
    assert_eq!(pki.sa_key_ids(), (new.clone(), vec![new]));
    // Done: the same annotation starts nothing again; a new value starts the next one.
    assert_eq!(decide(&pki, rotate("r1"), settled(0), until), None);
    assert_eq!(
        decide(&pki, rotate("r2"), settled(0), until),
        Some(RotationStep::Start("r2".to_owned()))
    );
}

#[test]
fn a_rotation_under_way_finishes_before_the_next_one_starts() {
    let (mut pki, _) = fresh();
    step(&mut pki, &RotationStep::Start("r1".to_owned()));
    let decide = |pki: &Pki, settled_at| {
        decide_rotation(
            pki.sa_rotation().stage(),
            rotate("r2"),
            settled_at,
            t0(),
            DAY,
        )
    };
    assert_eq!(
        decide(&pki, None),
        None,
        "Preparing r1 waits for its rollout"
    );
    step(&mut pki, &RotationStep::Switch);
    step(&mut pki, &RotationStep::Schedule(t0() + DAY));
    assert_eq!(
        decide(&pki, settled(0)),
        None,
        "Rotating r1 waits for its old key"
    );
    assert_eq!(pki.sa_rotation().id(), Some("r1"));
}

#[test]
fn the_secret_holds_each_phase_and_nothing_of_a_finished_one_but_its_name() {
    let (mut pki, _) = fresh();
    let keys = |pki: &Pki| -> Vec<String> {
        let data: ExistingSecrets = pki.to_secret_data();
        data[&Item::ServiceAccount].keys().cloned().collect()
    };
    step(&mut pki, &RotationStep::Start("r1".to_owned()));
    assert!(keys(&pki).contains(&NEXT_KEY.to_owned()));
    assert!(keys(&pki).contains(&ROTATION_ID.to_owned()));
    let next_public = pki.sa_verification_keys()[1].clone();
    step(&mut pki, &RotationStep::Switch);
    assert!(!keys(&pki).contains(&NEXT_KEY.to_owned()));
    step(&mut pki, &RotationStep::Schedule(t0() + DAY));
    assert!(keys(&pki).contains(&RETIRE_AFTER.to_owned()));
    assert_eq!(
        pki.sa_verification_keys()[0],
        next_public,
        "the next key became the signer"
    );
    step(&mut pki, &RotationStep::Retire);
    assert_eq!(
        keys(&pki),
        ["rotation.id", "sa.key", "sa.pub", "verify.pub"]
    );
    let data = pki.secret_data(Item::ServiceAccount);
    assert_eq!(data[VERIFY_PUB], data["sa.pub"]);
}

#[test]
fn what_cannot_be_read_of_a_rotation_is_left_out_and_the_signer_is_kept() {
    let (pki, mut data) = fresh();
    let sa = data.get_mut(&Item::ServiceAccount).unwrap();
    sa.insert(NEXT_KEY.to_owned(), b"not a key".to_vec());
    sa.insert(RETIRE_AFTER.to_owned(), b"tomorrow".to_vec());
    sa.insert(VERIFY_PUB.to_owned(), b"garbage".to_vec());
    let loaded = Pki::from_secret_data(&data).unwrap();
    assert_eq!(loaded.sa_rotation().phase(), RotationPhase::Settled);
    assert_eq!(loaded.sa_key_ids(), pki.sa_key_ids());
    assert_eq!(
        loaded.secret_data(Item::ServiceAccount)[SA_KEY],
        data[&Item::ServiceAccount][SA_KEY]
    );
}

#[test]
fn the_key_id_is_the_one_the_api_server_puts_in_tokens() {
    // kube-apiserver's keyIDFromPublicKey: base64url (no padding) of the SHA-256 of the PKIX DER.
    // The encoding on a byte whose hash has both '-' and '_' in it, computed with Python:
    //   base64.urlsafe_b64encode(hashlib.sha256(bytes([2])).digest()).rstrip(b'=')
    // (the e2e compares the kid of a real token with status.serviceAccountKey.signingKeyId).
    assert_eq!(key_id(&[2]), "28G0yQD_5I1XW12lxjgEASX2XbD-PiRJS3bqmGRX2YY");
}

#[test]
fn a_next_key_that_signs_already_is_no_rotation_to_go_on_with() {
    // A Secret restored by another tool from the middle of a switch: `next.key` is the signer.
    let (pki, mut data) = fresh();
    let sa = data.get_mut(&Item::ServiceAccount).unwrap();
    let signer = sa[SA_KEY].clone();
    sa.insert(NEXT_KEY.to_owned(), signer);
    let loaded = Pki::from_secret_data(&data).unwrap();
    assert_eq!(loaded.sa_rotation().phase(), RotationPhase::Settled);
    assert_eq!(loaded.sa_key_ids(), pki.sa_key_ids());
}

#[test]
fn a_replaced_key_keeps_the_name_of_the_last_rotation() {
    // `<tcp>-sa` unusable and its replacement accepted: the rotation annotation still on the
    // TCP must not start a rotation of the brand-new key.
    let (mut pki, _) = fresh();
    step(&mut pki, &RotationStep::Start("r1".to_owned()));
    let mut data = pki.to_secret_data();
    let sa = data.get_mut(&Item::ServiceAccount).unwrap();
    sa.insert(SA_KEY.to_owned(), b"broken".to_vec());
    let mut accepting = super::inputs();
    accepting.accept_new_roots.insert(Item::ServiceAccount);
    let replaced =
        crate::pki::execute(crate::pki::plan(&accepting, &data, t0()).unwrap(), t0()).unwrap();
    assert_ne!(replaced.sa_key_ids().0, pki.sa_key_ids().0, "a new key");
    assert_eq!(replaced.sa_rotation().phase(), RotationPhase::Settled);
    assert_eq!(replaced.sa_rotation().id(), Some("r1"));
    assert_eq!(
        decide_rotation(
            replaced.sa_rotation().stage(),
            rotate("r1"),
            settled(0),
            t0(),
            DAY
        ),
        None
    );
}
