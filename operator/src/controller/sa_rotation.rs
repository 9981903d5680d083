//! Service-account key rotation at the edge: the annotations read, the step the pure
//! `pki::decide_rotation` takes written to the `<tcp>-sa` Secret (the rotation's only state,
//! so a restart resumes it), an Event per step, and `status.serviceAccountKey`.

use hostplane_api::v1alpha1::{
    COMPLETE_SA_KEY_ROTATION_ANNOTATION, KeyRotationStatus, ROTATE_SA_KEY_ANNOTATION,
    ServiceAccountKeyStatus, TenantControlPlane,
};
use kube::ResourceExt as _;
use kube::runtime::events::EventType;
use time::OffsetDateTime;
use tracing::info;

use super::{Context, Error, Workloads, apply, publish_action};
use crate::build::{self, Tenant};
use crate::pki::{self, Item, Pki, RotationPhase, RotationRequest, RotationStep};
use crate::rollout;

/// Phases of `status.serviceAccountKey.rotation` and `status.caRotation`.
pub(super) const PREPARING: &str = "Preparing";
pub(super) const ROTATING: &str = "Rotating";
pub(super) const COMPLETING: &str = "Completing";
pub(super) const COMPLETED: &str = "Completed";

/// The annotations' values; a value that cannot name a rotation is an invalid spec (the error).
fn request(tcp: &TenantControlPlane) -> Result<RotationRequest<'_>, String> {
    Ok(RotationRequest {
        rotate: rotation_name(tcp, ROTATE_SA_KEY_ANNOTATION)?,
        complete: rotation_name(tcp, COMPLETE_SA_KEY_ROTATION_ANNOTATION)?,
    })
}

/// Now in whole seconds: a rotation's times are shown in the status and stored in a Secret.
pub(super) fn now_whole_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - time::Duration::nanoseconds(i64::from(now.nanosecond()))
}

/// The value of the annotation `name`, which names a rotation, if it is set.
pub(super) fn rotation_name<'a>(
    tcp: &'a TenantControlPlane,
    name: &str,
) -> Result<Option<&'a str>, String> {
    let Some(value) = tcp.annotations().get(name).map(String::as_str) else {
        return Ok(None);
    };
    let fine = (1..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if fine {
        Ok(Some(value))
    } else {
        Err(format!(
            "annotation {name} must be 1 to 63 letters, digits, '.', '_' or '-' (it names a \
             rotation, e.g. the date: 2026-11-24); it is {value:?}"
        ))
    }
}

/// What a pass made of the service-account keys.
pub struct Seen {
    pub status: ServiceAccountKeyStatus,
    /// When to look again: at once after a step (the next pass builds with what it wrote), or
    /// when the old key of a rotation falls due.
    pub due: Option<OffsetDateTime>,
}

/// The step of a rotation that is due, if one is, and the status after it.
pub async fn pass(
    tcp: &TenantControlPlane,
    ctx: &Context,
    tenant: &Tenant,
    pki: &mut Pki,
    workloads: &Workloads,
) -> Result<Seen, Error> {
    // Every API server runs with the PKI this pass read (and built with), and the ones of the
    // template before have stopped (their grace period is over): none is left that would refuse
    // a token of a key it does not trust yet.
    let now = OffsetDateTime::now_utc();
    let settled_at = workloads
        .apiserver
        .as_ref()
        .and_then(rollout::api_servers_settled_at);
    let current = settled_at.is_some_and(|t| now >= t);
    let change = step(tcp, ctx, tenant, pki, settled_at).await?;
    let old = tcp
        .status
        .as_ref()
        .and_then(|s| s.service_account_key.as_ref());
    let status = status(pki, old, current, change.as_ref());
    // A rotation under way moves on once the API servers' old pods are gone (the caller looks
    // again then, see `api_servers_settled_at`), or when the old key falls due.
    let due = if change.is_some() {
        Some(OffsetDateTime::now_utc())
    } else {
        pki.sa_rotation().retire_after()
    };
    Ok(Seen { status, due })
}

/// Takes the step of a rotation that is due, if one is: carried out on `pki`, written to the
/// Secret, announced by an Event. `settled_at`: since when every API server runs with the Secret
/// as it was at the start of this pass, and the pods of before have stopped.
async fn step(
    tcp: &TenantControlPlane,
    ctx: &Context,
    tenant: &Tenant,
    pki: &mut Pki,
    settled_at: Option<OffsetDateTime>,
) -> Result<Option<RotationStep>, Error> {
    let now = now_whole_seconds();
    let Some(change) = pki::decide_rotation(
        pki.sa_rotation().stage(),
        request(tcp).map_err(Error::InvalidSpec)?,
        settled_at,
        now,
        build::apiserver::max_token_lifetime(tenant),
    ) else {
        return Ok(None);
    };
    let old_ids = pki.sa_key_ids();
    pki.rotate_service_account(&change)?;
    apply::apply(
        &ctx.client,
        &build::pki_secrets::secret(tenant, pki, Item::ServiceAccount),
    )
    .await?;
    let id = pki.sa_rotation().id().unwrap_or_default().to_owned();
    let (signing, _) = pki.sa_key_ids();
    let note = match &change {
        RotationStep::Start(_) => format!(
            "service-account key rotation {id}, step 1 of 3: a new key is trusted beside the \
             signing key {}; the API servers roll, then the new key signs",
            old_ids.0
        ),
        RotationStep::Switch => format!(
            "service-account key rotation {id}, step 2 of 3: the new key {signing} signs new \
             tokens; the old key {} stays trusted for the longest token lifetime after the last \
             API server that signs with it has stopped (status.serviceAccountKey.rotation.\
             oldKeyTrustedUntil), or until `kubectl annotate tcp/{} \
             {COMPLETE_SA_KEY_ROTATION_ANNOTATION}={id}` once every token in use is a new one",
            old_ids.0,
            tcp.name_any()
        ),
        // Bookkeeping: the time the status shows from now on.
        RotationStep::Schedule(until) => {
            info!(rotation = %id, old_key_trusted_until = %pki::rfc3339_of(*until), "service-account key rotation: the old key falls due");
            return Ok(Some(change));
        }
        RotationStep::Retire => format!(
            "service-account key rotation {id}, step 3 of 3: only the key {signing} is trusted; \
             the API servers roll and then refuse tokens of the old key"
        ),
    };
    info!(rotation = %id, step = ?phase_after(&change), "service-account key rotation");
    publish_action(
        tcp,
        ctx,
        EventType::Normal,
        "ServiceAccountKeyRotation",
        phase_after(&change),
        Some(note),
    )
    .await;
    Ok(Some(change))
}

fn phase_after(change: &RotationStep) -> &'static str {
    match change {
        RotationStep::Start(_) => PREPARING,
        RotationStep::Switch | RotationStep::Schedule(_) => ROTATING,
        RotationStep::Retire => COMPLETING,
    }
}

/// `status.serviceAccountKey` after this pass. A settled key set is `Completing` until the API
/// servers run with it, when the rotation was Rotating or Completing before (a later rollout,
/// a renewal, does not reopen a completed rotation).
fn status(
    pki: &Pki,
    old: Option<&ServiceAccountKeyStatus>,
    api_servers_current: bool,
    changed: Option<&RotationStep>,
) -> ServiceAccountKeyStatus {
    let (signing_key_id, accepted_key_ids) = pki.sa_key_ids();
    let rotation = pki.sa_rotation();
    let was = old
        .and_then(|s| s.rotation.as_ref())
        .filter(|r| Some(r.id.as_str()) == rotation.id())
        .map(|r| r.phase.as_str());
    let phase = match rotation.phase() {
        RotationPhase::Preparing => PREPARING,
        RotationPhase::Rotating => ROTATING,
        RotationPhase::Settled
            if changed.is_some()
                || (!api_servers_current && matches!(was, Some(ROTATING | COMPLETING))) =>
        {
            COMPLETING
        }
        RotationPhase::Settled => COMPLETED,
    };
    ServiceAccountKeyStatus {
        signing_key_id,
        accepted_key_ids,
        rotation: rotation.id().map(|id| KeyRotationStatus {
            id: id.to_owned(),
            phase: phase.to_owned(),
            old_key_trusted_until: rotation
                .retire_after()
                .filter(|_| phase == ROTATING)
                .map(pki::rfc3339_of),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn tcp(annotations: &[(&str, &str)]) -> TenantControlPlane {
        let mut tcp = TenantControlPlane::new(
            "t",
            serde_json::from_str("{\"version\": \"1.36.3\"}").unwrap(),
        );
        tcp.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        tcp
    }

    #[test]
    fn a_rotation_is_named_by_a_short_plain_value() {
        let ok = tcp(&[
            (ROTATE_SA_KEY_ANNOTATION, "2026-11-24.a_1"),
            (COMPLETE_SA_KEY_ROTATION_ANNOTATION, "x"),
        ]);
        let r = request(&ok).unwrap();
        assert_eq!((r.rotate, r.complete), (Some("2026-11-24.a_1"), Some("x")));
        let plain = tcp(&[]);
        let none = request(&plain).unwrap();
        assert_eq!((none.rotate, none.complete), (None, None));
        let long = "a".repeat(64);
        for bad in ["", "a b", "x/y", long.as_str()] {
            let message = request(&tcp(&[(ROTATE_SA_KEY_ANNOTATION, bad)])).unwrap_err();
            assert!(message.contains(ROTATE_SA_KEY_ANNOTATION), "{message}");
        }
    }
}
