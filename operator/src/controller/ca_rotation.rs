//! CA rotation at the edge: the annotations read, the step the pure `pki::decide_rotation` takes
//! for each of the three CAs written to its Secret (the rotation's only state, so a restart
//! resumes it), an Event per step, and `status.caRotation`.

use hostplane_api::v1alpha1::{
    COMPLETE_CA_ROTATION_ANNOTATION, CaRotationStatus, ROTATE_CA_ANNOTATION, TenantControlPlane,
};
use kube::ResourceExt as _;
use kube::runtime::events::EventType;
use time::OffsetDateTime;
use tracing::info;

use super::sa_rotation::{
    COMPLETED, COMPLETING, PREPARING, ROTATING, now_whole_seconds, rotation_name,
};
use super::{Context, Error, Workloads, apply, publish_action};
use crate::build::{self, Tenant};
use crate::pki::{self, CaItem, Pki, RotationPhase, RotationRequest, RotationStep};
use crate::rollout;

/// The annotations' values; a value that cannot name a rotation is an invalid spec (the error).
fn request(tcp: &TenantControlPlane) -> Result<RotationRequest<'_>, String> {
    Ok(RotationRequest {
        rotate: rotation_name(tcp, ROTATE_CA_ANNOTATION)?,
        complete: rotation_name(tcp, COMPLETE_CA_ROTATION_ANNOTATION)?,
    })
}

/// What a pass made of the CAs.
pub struct Seen {
    pub status: Option<CaRotationStatus>,
    /// When to look again: at once after a step, or when the old CAs fall due.
    pub due: Option<OffsetDateTime>,
}

/// Since when every control-plane workload runs with the PKI this pass read, and the pods of
/// before have stopped.
pub fn settled_at(workloads: &Workloads) -> Option<OffsetDateTime> {
    rollout::control_plane_settled_at(
        &workloads.etcd,
        workloads.apiserver.as_ref()?,
        &workloads.controllers,
    )
}

/// The step of a rotation that is due for each CA, if one is, and the status after it.
pub async fn pass(
    tcp: &TenantControlPlane,
    ctx: &Context,
    tenant: &Tenant,
    pki: &mut Pki,
    workloads: &Workloads,
) -> Result<Seen, Error> {
    let now = now_whole_seconds();
    let settled = settled_at(workloads);
    let request = request(tcp).map_err(Error::InvalidSpec)?;
    let inputs = tenant.pki_inputs();
    // What the old cluster CA signed that the operator does not re-issue: kubelets' client
    // certificates, which the controller-manager signs.
    let longest = build::controllers::signing_duration(tenant);
    let mut steps = Vec::new();
    for ca in CaItem::ALL {
        let stage = pki.ca_rotation(ca).stage();
        let Some(step) = pki::decide_rotation(stage, request, settled, now, longest) else {
            continue;
        };
        pki.rotate_ca(ca, &step, &inputs, now)?;
        apply::apply(
            &ctx.client,
            &build::pki_secrets::secret(tenant, pki, ca.item()),
        )
        .await?;
        steps.push(step);
    }
    announce(tcp, ctx, pki, &steps).await;
    let current = settled.is_some_and(|t| now >= t);
    let old = tcp.status.as_ref().and_then(|s| s.ca_rotation.as_ref());
    let status = status(pki, old, current, !steps.is_empty());
    let due = if steps.is_empty() {
        let retire = CaItem::ALL
            .iter()
            .filter_map(|ca| pki.ca_rotation(*ca).retire_after())
            .min();
        // A step that waits for the control plane to settle is looked at again within half a
        // minute: the end of a rollout's grace period, or of etcd's, is announced by no event.
        let waiting = status.as_ref().is_some_and(|s| {
            s.phase == PREPARING
                || s.phase == COMPLETING
                || (s.phase == ROTATING && s.old_ca_trusted_until.is_none())
        });
        let soon = waiting.then(|| OffsetDateTime::now_utc() + time::Duration::seconds(30));
        [retire, soon].into_iter().flatten().min()
    } else {
        Some(OffsetDateTime::now_utc())
    };
    Ok(Seen { status, due })
}

/// One Event and log line per kind of step taken (the three CAs move together).
async fn announce(tcp: &TenantControlPlane, ctx: &Context, pki: &Pki, steps: &[RotationStep]) {
    let id = pki.ca_rotation(CaItem::Cluster).id().unwrap_or_default();
    let name = tcp.name_any();
    let mut said = Vec::new();
    for step in steps {
        let (phase, note) = match step {
            RotationStep::Start(_) => (
                PREPARING,
                format!(
                    "CA rotation {id}, step 1 of 3: new cluster, etcd and front-proxy CAs are \
                     trusted beside the old ones (every trust bundle, kubeconfig, \
                     kube-root-ca.crt and cluster-info); the control plane rolls, then the new \
                     CAs sign"
                ),
            ),
            RotationStep::Switch => (
                ROTATING,
                format!(
                    "CA rotation {id}, step 2 of 3: the new CAs sign; every certificate and \
                     kubeconfig is re-issued (download <tcp>-kubeconfig again); the old CAs stay \
                     trusted until every certificate they signed has expired, kubelets' client \
                     certificates included (status.caRotation.oldCaTrustedUntil), or until \
                     `kubectl annotate tcp/{name} {COMPLETE_CA_ROTATION_ANNOTATION}={id}` once \
                     every kubelet has renewed its client certificate"
                ),
            ),
            RotationStep::Schedule(until) => {
                info!(rotation = %id, old_ca_trusted_until = %pki::rfc3339_of(*until), "CA rotation: the old CAs fall due");
                continue;
            }
            RotationStep::Retire => (
                COMPLETING,
                format!(
                    "CA rotation {id}, step 3 of 3: only the new CAs are trusted; the control \
                     plane rolls, then refuses certificates and kubeconfigs of the old CAs"
                ),
            ),
        };
        if said.contains(&phase) {
            continue;
        }
        said.push(phase);
        info!(rotation = %id, step = phase, "CA rotation");
        publish_action(tcp, ctx, EventType::Normal, "CARotation", phase, Some(note)).await;
    }
}

/// `status.caRotation` after this pass: the least advanced CA's phase. Settled CAs are
/// `Completing` until the control plane runs with them, when the rotation was Rotating or
/// Completing before.
fn status(
    pki: &Pki,
    old: Option<&CaRotationStatus>,
    control_plane_current: bool,
    changed: bool,
) -> Option<CaRotationStatus> {
    let id = pki.ca_rotation(CaItem::Cluster).id()?;
    let phases = CaItem::ALL.map(|ca| pki.ca_rotation(ca).phase());
    let was = old.filter(|r| r.id == id).map(|r| r.phase.as_str());
    let phase = if phases.contains(&RotationPhase::Preparing) {
        PREPARING
    } else if phases.contains(&RotationPhase::Rotating) {
        ROTATING
    } else if changed || (!control_plane_current && matches!(was, Some(ROTATING | COMPLETING))) {
        COMPLETING
    } else {
        COMPLETED
    };
    let until = CaItem::ALL
        .iter()
        .filter_map(|ca| pki.ca_rotation(*ca).retire_after())
        .max()
        .filter(|_| phase == ROTATING)
        .map(pki::rfc3339_of);
    Some(CaRotationStatus {
        id: id.to_owned(),
        phase: phase.to_owned(),
        old_ca_trusted_until: until,
    })
}
