//! In-place restore of a tenant's etcd from a snapshot on its backup volume, asked for with the
//! annotation `hostplane.dev/restore: <snapshot>.db[#<anything>]` and carried through
//! `status.backup.restore` so that an operator restart resumes it where it was:
//!
//! 1. Stopping: the control plane and etcd are scaled to zero (as for hibernation);
//! 2. Restoring: once no pod of the tenant runs, a Job per etcd member checks the snapshot and
//!    replaces the member's data (build::backup::restore_job);
//! 3. Starting: the control plane is scaled up again in the usual order;
//! 4. Succeeded once Ready, or Failed (the tenant starts again on the data it had: nothing was
//!    swapped) with the Jobs' reason.

use hostplane_api::v1alpha1::{RESTORE_ANNOTATION, RestoreStatus, RestoreStep, TenantControlPlane};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt as _};

use super::apply;
use super::error::Error;
use crate::build::backup::{self as build, RestoreInputs};
use crate::build::{TENANT_LABEL, Tenant, etcd};
use crate::status::READY;
use tracing::warn;

/// The annotation on a restore Job naming the request it serves.
const REQUEST_ANNOTATION: &str = "hostplane.dev/restore-request";
/// The request of a tenant created from a snapshot (`spec.etcd.managed.restoreFrom`).
pub const RESTORE_FROM_REQUEST: &str = "restoreFrom";

/// The restore this pass works on: the one in progress, or a new one the annotation asks for
/// (a value not served yet). Pure.
pub fn current(tcp: &TenantControlPlane) -> Option<RestoreStatus> {
    let last = tcp
        .status
        .as_ref()
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.restore.clone());
    if let Some(r) = last.as_ref().filter(|r| in_progress(r.step)) {
        return Some(r.clone());
    }
    // Created from a snapshot: restored before etcd first starts (the caller checks that etcd
    // has no data yet).
    if last.is_none()
        && let Some(from) = tcp
            .spec
            .etcd
            .managed
            .as_ref()
            .and_then(|m| m.restore_from.as_ref())
    {
        return Some(RestoreStatus {
            request: RESTORE_FROM_REQUEST.to_owned(),
            source: Some(from.tenant.clone()),
            snapshot: from.snapshot.clone(),
            step: RestoreStep::Stopping,
            message: format!(
                "etcd is created from snapshot {} of TenantControlPlane {}",
                from.snapshot, from.tenant
            ),
        });
    }
    let request = tcp
        .annotations()
        .get(RESTORE_ANNOTATION)
        .filter(|v| !v.trim().is_empty())?;
    if last.as_ref().is_some_and(|r| &r.request == request) {
        return last;
    }
    let snapshot = request.split('#').next().unwrap_or_default().trim();
    Some(RestoreStatus {
        request: request.clone(),
        source: None,
        snapshot: snapshot.to_owned(),
        step: RestoreStep::Stopping,
        message: format!("stopping the control plane to restore {snapshot}"),
    })
}

/// The restore of this pass (`current`), except a `restoreFrom` that would write over an etcd
/// volume that exists already (its status lost): never over data.
pub async fn for_pass(
    client: &Client,
    tcp: &TenantControlPlane,
    tenant: &Tenant,
) -> Result<Option<RestoreStatus>, Error> {
    let restore = current(tcp);
    let recorded = tcp
        .status
        .as_ref()
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.restore.as_ref())
        .is_some();
    if restore.as_ref().is_some_and(|r| r.source.is_some())
        && !recorded
        && etcd_has_data(client, tenant).await?
    {
        warn!("etcd.managed.restoreFrom is ignored: etcd's volume exists already");
        return Ok(None);
    }
    Ok(restore)
}

/// Whether the first etcd member's volume exists (etcd started, or a restore made it).
async fn etcd_has_data(client: &Client, tenant: &Tenant) -> Result<bool, Error> {
    let name = format!("data-{}-0", etcd::name(tenant));
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &tenant.namespace);
    Ok(claims
        .get_metadata_opt(&name)
        .await
        .map_err(Error::kube("get", "PersistentVolumeClaim", &name))?
        .is_some())
}

/// What this pass saw, for `step`: whether the restore held etcd at zero, the tenant's pods
/// still there, whether it stays hibernated.
pub struct Pass {
    pub held: bool,
    pub running: i32,
    pub hibernated: bool,
}

/// Moves the restore on (an Event per step taken) and, while it holds the tenant, makes the
/// observation say so: phase Restoring, Ready False with reason Restoring (RestoreFailed on the
/// pass a held restore fails; the tenant starts on the next one).
pub(super) async fn step(
    tcp: &TenantControlPlane,
    ctx: &super::Context,
    tenant: &Tenant,
    restore: &mut RestoreStatus,
    pass: &Pass,
    observation: &mut super::Observation,
) -> Result<(), Error> {
    if !in_progress(restore.step) {
        return Ok(());
    }
    let event = advance(
        &ctx.client,
        tenant,
        restore,
        pass,
        observation.ready,
        ctx.settings.operator_image.as_deref(),
    )
    .await?;
    if let Some(e) = event {
        super::publish(tcp, ctx, e.type_, e.reason, Some(e.note)).await;
    }
    if !(in_progress(restore.step) || pass.held) {
        return Ok(());
    }
    let reason = if restore.step == RestoreStep::Failed {
        "RestoreFailed"
    } else {
        "Restoring"
    };
    for c in &mut observation.conditions {
        if c.type_ == READY || c.reason.starts_with("Hibernat") {
            c.status = false;
            reason.clone_into(&mut c.reason);
            c.message.clone_from(&restore.message);
        }
    }
    observation.ready = false;
    observation.hibernated = false;
    observation.restoring = true;
    // Pods stopping, Jobs running, a control plane starting: look again soon.
    observation.next = super::Next::TenantAnswer;
    Ok(())
}

/// Puts `restore` into the status this pass writes.
pub(super) fn record(
    tcp: &TenantControlPlane,
    restore: RestoreStatus,
    observation: &mut super::Observation,
) {
    let mut backup = observation
        .backup
        .take()
        .or_else(|| tcp.status.as_ref().and_then(|s| s.backup.clone()))
        .unwrap_or_default();
    backup.restore = Some(restore);
    observation.backup = Some(backup);
}

/// Whether the restore still holds the tenant.
pub fn in_progress(step: RestoreStep) -> bool {
    matches!(
        step,
        RestoreStep::Stopping | RestoreStep::Restoring | RestoreStep::Starting
    )
}

/// Whether etcd must be stopped for it.
pub fn stops_etcd(restore: Option<&RestoreStatus>) -> bool {
    restore.is_some_and(|r| matches!(r.step, RestoreStep::Stopping | RestoreStep::Restoring))
}

/// An Event to publish about a step taken.
pub struct StepEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// Moves `restore` on by what this pass saw and whether the tenant is `ready`. Returns the
/// Event of the step taken, if any.
async fn advance(
    client: &Client,
    tenant: &Tenant,
    restore: &mut RestoreStatus,
    pass: &Pass,
    ready: bool,
    operator_image: Option<&str>,
) -> Result<Option<StepEvent>, Error> {
    match restore.step {
        RestoreStep::Stopping if pass.running == 0 => {
            begin(client, tenant, restore, operator_image).await
        }
        RestoreStep::Stopping => {
            restore.message = format!(
                "stopping the control plane to restore {}: {} pod(s) still running",
                restore.snapshot, pass.running
            );
            Ok(None)
        }
        RestoreStep::Restoring => {
            let jobs = jobs_of(client, tenant, &restore.request).await?;
            let members = etcd::member_names(tenant).len();
            if let Some(failed) = jobs
                .iter()
                .find(|j| super::backup::finished(j) == Some(false))
            {
                let why = super::backup::read_result(client, tenant, failed)
                    .await?
                    .err()
                    .unwrap_or_else(|| "it reported no reason".to_owned());
                return Ok(Some(fail(
                    restore,
                    &format!("restore Job {} failed: {why}", failed.name_any()),
                )));
            }
            let done = jobs
                .iter()
                .filter(|j| super::backup::finished(j) == Some(true))
                .count();
            if done < members {
                restore.message = format!(
                    "restoring {}: {done} of {members} etcd member(s) done",
                    restore.snapshot
                );
                return Ok(None);
            }
            let message = format!(
                "every etcd member holds {}; starting the control plane",
                restore.snapshot
            );
            Ok(Some(to(
                restore,
                RestoreStep::Starting,
                "RestoreStarting",
                message,
            )))
        }
        RestoreStep::Starting if ready || pass.hibernated => {
            let message = format!(
                "restored {}{}; the data before it is kept beside each member's as \
                 data.before-restore-*",
                restore.snapshot,
                if pass.hibernated {
                    " (the tenant stays hibernated)"
                } else {
                    ""
                }
            );
            Ok(Some(to(
                restore,
                RestoreStep::Succeeded,
                "Restored",
                message,
            )))
        }
        RestoreStep::Starting | RestoreStep::Succeeded | RestoreStep::Failed => Ok(None),
    }
}

/// Nothing of the tenant runs: the Jobs start, against this tenant's backup volume or the
/// `restoreFrom` tenant's (whose member volumes are made first).
async fn begin(
    client: &Client,
    tenant: &Tenant,
    restore: &mut RestoreStatus,
    operator_image: Option<&str>,
) -> Result<Option<StepEvent>, Error> {
    let Some(image) = operator_image else {
        return Ok(Some(fail(
            restore,
            "the operator does not know its own image, which the restore Jobs run: set \
             HOSTPLANE_IMAGE in the operator's Deployment",
        )));
    };
    // The backup volume and the uid its snapshots must name.
    let (claim, uid) = match &restore.source {
        None => (build::claim_name(tenant), tenant.owner.uid.clone()),
        Some(source) => {
            let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &tenant.namespace);
            let found = tcps.get_opt(source).await.map_err(Error::kube(
                "get",
                "TenantControlPlane",
                source,
            ))?;
            let Some(uid) = found.and_then(|t| t.metadata.uid) else {
                let why = format!(
                    "TenantControlPlane {source}, whose backup volume holds the snapshot, is not \
                     in namespace {}",
                    tenant.namespace
                );
                return Ok(Some(fail(restore, &why)));
            };
            for member in etcd::member_names(tenant) {
                apply::apply(client, &etcd::member_claim(tenant, &member)?).await?;
            }
            (format!("{source}-etcd-backups"), uid)
        }
    };
    start_jobs(client, tenant, restore, image, (&claim, &uid)).await?;
    let message = format!(
        "a Job per etcd member checks {} and puts it in place of the member's data",
        restore.snapshot
    );
    Ok(Some(to(
        restore,
        RestoreStep::Restoring,
        "RestoreRunning",
        message,
    )))
}

/// The restore moves to `step`, saying `message`; the Event that tells.
fn to(
    restore: &mut RestoreStatus,
    step: RestoreStep,
    reason: &'static str,
    message: String,
) -> StepEvent {
    restore.step = step;
    restore.message = message;
    StepEvent {
        type_: EventType::Normal,
        reason,
        note: restore.message.clone(),
    }
}

/// Failed: the tenant starts again on the data it had (a Job swaps only after a full restore).
fn fail(restore: &mut RestoreStatus, why: &str) -> StepEvent {
    restore.step = RestoreStep::Failed;
    restore.message = format!(
        "restoring {} failed, nothing was replaced and the tenant starts again on its data: \
         {why}. To try again, fix the cause and set {RESTORE_ANNOTATION} to a new value (e.g. \
         {}#2)",
        restore.snapshot, restore.snapshot
    );
    StepEvent {
        type_: EventType::Warning,
        reason: "RestoreFailed",
        note: restore.message.clone(),
    }
}

async fn jobs_of(client: &Client, tenant: &Tenant, request: &str) -> Result<Vec<Job>, Error> {
    let selector = format!(
        "{TENANT_LABEL}={},app.kubernetes.io/component={}",
        tenant.name,
        build::RESTORE_COMPONENT
    );
    Ok(Api::<Job>::namespaced(client.clone(), &tenant.namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list", "Job", &selector))?
        .items
        .into_iter()
        .filter(|j| j.annotations().get(REQUEST_ANNOTATION).map(String::as_str) == Some(request))
        .collect())
}

/// One Job per etcd member; one already there (an earlier pass) is taken as started.
async fn start_jobs(
    client: &Client,
    tenant: &Tenant,
    restore: &RestoreStatus,
    image: &str,
    (claim, uid): (&str, &str),
) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(client.clone(), &tenant.namespace);
    let digest = ring::digest::digest(&ring::digest::SHA256, restore.request.as_bytes());
    let hash = crate::snapshot::hex(digest.as_ref().get(..4).unwrap_or_default());
    let stamp = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y%m%d-%H%M%S")
        .to_string();
    for (i, member) in etcd::member_names(tenant).iter().enumerate() {
        let suffix = format!("-restore-{i}-{hash}");
        let cut: String = tenant.name.chars().take(63 - suffix.len()).collect();
        let name = format!("{}{suffix}", cut.trim_end_matches('-'));
        let mut job = build::restore_job(
            tenant,
            &RestoreInputs {
                job: &name,
                member,
                snapshot: &restore.snapshot,
                claim,
                uid,
                stamp: &stamp,
                operator_image: image,
            },
        )?;
        job.annotations_mut()
            .insert(REQUEST_ANNOTATION.to_owned(), restore.request.clone());
        match api.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::kube("create", "Job", &name)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hostplane_api::v1alpha1::{BackupStatus, TenantControlPlaneStatus};

    use super::*;

    fn tcp(annotation: Option<&str>, last: Option<RestoreStatus>) -> TenantControlPlane {
        let mut tcp: TenantControlPlane = serde_json::from_value(serde_json::json!({
            "apiVersion": "hostplane.dev/v1alpha1", "kind": "TenantControlPlane",
            "metadata": {"name": "t", "namespace": "ns"},
            "spec": {"version": "1.36.3"},
        }))
        .unwrap();
        if let Some(a) = annotation {
            tcp.annotations_mut()
                .insert(RESTORE_ANNOTATION.to_owned(), a.to_owned());
        }
        tcp.status = Some(TenantControlPlaneStatus {
            backup: Some(BackupStatus {
                restore: last,
                ..BackupStatus::default()
            }),
            ..TenantControlPlaneStatus::default()
        });
        tcp
    }

    fn status(request: &str, step: RestoreStep) -> RestoreStatus {
        RestoreStatus {
            request: request.into(),
            source: None,
            snapshot: request.split('#').next().unwrap().into(),
            step,
            message: String::new(),
        }
    }

    #[test]
    fn a_new_value_starts_a_restore_and_a_served_one_does_not() {
        assert_eq!(current(&tcp(None, None)), None);
        let new = current(&tcp(Some("t-20261123-120000.db#2"), None)).unwrap();
        assert_eq!(new.snapshot, "t-20261123-120000.db");
        assert_eq!(new.step, RestoreStep::Stopping);
        let served = status("a.db", RestoreStep::Succeeded);
        let again = current(&tcp(Some("a.db"), Some(served.clone()))).unwrap();
        assert_eq!(again, served, "the same value is not restored twice");
        assert_eq!(
            current(&tcp(Some("a.db#2"), Some(served))).unwrap().step,
            RestoreStep::Stopping
        );
    }

    #[test]
    fn one_in_progress_goes_on_even_if_the_annotation_changes_or_goes() {
        let running = status("a.db", RestoreStep::Restoring);
        assert_eq!(
            current(&tcp(None, Some(running.clone()))),
            Some(running.clone())
        );
        assert_eq!(
            current(&tcp(Some("b.db"), Some(running.clone()))),
            Some(running.clone())
        );
        assert!(stops_etcd(Some(&running)));
        assert!(!stops_etcd(Some(&status("a.db", RestoreStep::Starting))));
    }
}
