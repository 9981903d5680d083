//! In-place restore of a tenant's etcd from a snapshot on its backup volume, asked for with the
//! annotation `hostplane.dev/restore: <snapshot>.db[#<anything>]` and carried through
//! `status.backup.restore` so that an operator restart resumes it where it was:
//!
//! 1. Stopping: the control plane and etcd are scaled to zero (as for hibernation);
//! 2. Restoring: once no pod of the tenant runs, a Job per etcd member checks the snapshot and
//!    writes it beside the member's data (build::backup::RestoreStage::Prepare);
//! 3. Swapping: once every member's is written, a Job per member puts it in place (Swap);
//! 4. Starting: the control plane is scaled up again in the usual order;
//! 5. Succeeded once Ready, or Failed with the Jobs' reason: a failure while Restoring, once none
//!    of its Jobs runs any more, leaves every member on the data it had.

use hostplane_api::v1alpha1::{RESTORE_ANNOTATION, RestoreStatus, RestoreStep, TenantControlPlane};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt as _};

use super::apply;
use super::error::Error;
use crate::build::backup::{self as build, RestoreInputs, RestoreStage};
use crate::build::{Tenant, etcd};
use crate::status::READY;
use tracing::warn;

/// The annotation on a restore Job naming the attempt it serves.
const ATTEMPT_ANNOTATION: &str = "hostplane.dev/restore-attempt";
/// The request of a tenant created from a snapshot (`spec.etcd.managed.restoreFrom`).
pub const RESTORE_FROM_REQUEST: &str = "restoreFrom";

/// The restore this pass works on: the one in progress, or a new one the annotation asks for
/// (a value not served yet), which begins `now`. Pure.
pub fn current(tcp: &TenantControlPlane, now: Timestamp) -> Option<RestoreStatus> {
    let attempt = Some(now.strftime("%Y%m%d-%H%M%S").to_string());
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
            attempt,
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
        attempt,
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
    let restore = current(tcp, Timestamp::now());
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
    /// The restore is in the status as this pass has it: Jobs start only then, so that a pass
    /// whose status write is lost cannot start a second attempt beside the first.
    pub recorded: bool,
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
        RestoreStep::Stopping
            | RestoreStep::Restoring
            | RestoreStep::Swapping
            | RestoreStep::Starting
    )
}

/// Whether etcd must be stopped for it.
pub fn stops_etcd(restore: Option<&RestoreStatus>) -> bool {
    restore.is_some_and(|r| {
        matches!(
            r.step,
            RestoreStep::Stopping | RestoreStep::Restoring | RestoreStep::Swapping
        )
    })
}

/// Whether `tcp`'s status holds this attempt of `restore`.
pub fn recorded(tcp: &TenantControlPlane, restore: &RestoreStatus) -> bool {
    tcp.status
        .as_ref()
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.restore.as_ref())
        .is_some_and(|r| r.request == restore.request && r.attempt == restore.attempt)
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
    let Some(image) = operator_image else {
        return Ok(Some(fail(
            restore,
            "the operator does not know its own image, which the restore Jobs run: set \
             HOSTPLANE_IMAGE in the operator's Deployment",
        )));
    };
    match restore.step {
        RestoreStep::Stopping if pass.running == 0 && pass.recorded => {
            // Never two attempts at once on the same volumes.
            if let Some(job) = running_restore_job(client, tenant).await? {
                restore.message =
                    format!("waiting for restore Job {job} of an earlier attempt to finish");
                return Ok(None);
            }
            let (claim, uid) = match source(client, tenant, restore).await? {
                Ok(found) => found,
                Err(why) => return Ok(Some(fail(restore, &why))),
            };
            let inputs = (claim.as_str(), uid.as_str(), image);
            start_jobs(client, tenant, restore, RestoreStage::Prepare, inputs).await?;
            let message = format!(
                "a Job per etcd member checks {} and writes it beside the member's data",
                restore.snapshot
            );
            Ok(Some(to(
                restore,
                RestoreStep::Restoring,
                "RestoreRunning",
                message,
            )))
        }
        RestoreStep::Stopping => {
            restore.message = format!(
                "stopping the control plane to restore {}: {} pod(s) still running",
                restore.snapshot, pass.running
            );
            Ok(None)
        }
        RestoreStep::Restoring | RestoreStep::Swapping => {
            jobs_step(client, tenant, restore, image).await
        }
        RestoreStep::Starting if ready || pass.hibernated => {
            let message = format!(
                "restored {}{}; the data before it is kept beside each member's as \
                 data.before-restore-{}",
                restore.snapshot,
                if pass.hibernated {
                    " (the tenant stays hibernated)"
                } else {
                    ""
                },
                restore.attempt.as_deref().unwrap_or("*")
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

/// Restoring or Swapping: waits for this stage's Jobs (creating any missing), fails once one
/// failed and none runs, or moves on once every member's completed.
async fn jobs_step(
    client: &Client,
    tenant: &Tenant,
    restore: &mut RestoreStatus,
    image: &str,
) -> Result<Option<StepEvent>, Error> {
    let stage = if restore.step == RestoreStep::Restoring {
        RestoreStage::Prepare
    } else {
        RestoreStage::Swap
    };
    let jobs = jobs_of(client, tenant, restore, stage).await?;
    let members = etcd::member_names(tenant).len();
    let running = jobs
        .iter()
        .filter(|j| super::backup::finished(j).is_none())
        .count();
    let done = jobs
        .iter()
        .filter(|j| super::backup::finished(j) == Some(true))
        .count();
    let failed = jobs
        .iter()
        .find(|j| super::backup::finished(j) == Some(false));
    if let (Some(job), 0) = (failed, running) {
        let why = super::backup::read_result(client, tenant, job)
            .await?
            .err()
            .unwrap_or_else(|| "it reported no reason".to_owned());
        let why = match stage {
            RestoreStage::Prepare => {
                format!("restore Job {} failed: {why}", job.name_any())
            }
            RestoreStage::Swap => format!(
                "swap Job {} failed: {why}; members whose swap completed hold the \
                         snapshot, the others their old data: restore again",
                job.name_any()
            ),
        };
        return Ok(Some(fail(restore, &why)));
    }
    if done < members {
        if jobs.len() < members && failed.is_none() {
            // Some were not created (a pass cut short): create the rest.
            let (claim, uid) = match stage {
                RestoreStage::Prepare => match source(client, tenant, restore).await? {
                    Ok(found) => found,
                    Err(why) => return Ok(Some(fail(restore, &why))),
                },
                RestoreStage::Swap => swap_source(tenant),
            };
            start_jobs(client, tenant, restore, stage, (&claim, &uid, image)).await?;
        }
        restore.message = format!(
            "{} {}: {done} of {members} etcd member(s) done",
            if stage == RestoreStage::Prepare {
                "restoring"
            } else {
                "swapping in"
            },
            restore.snapshot
        );
        return Ok(None);
    }
    if stage == RestoreStage::Prepare {
        let (claim, uid) = swap_source(tenant);
        start_jobs(
            client,
            tenant,
            restore,
            RestoreStage::Swap,
            (&claim, &uid, image),
        )
        .await?;
        let message = format!(
            "every etcd member's copy of {} is written; a Job per member puts it in place",
            restore.snapshot
        );
        return Ok(Some(to(
            restore,
            RestoreStep::Swapping,
            "RestoreSwapping",
            message,
        )));
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

/// What the Swap Jobs are given for the backup volume: nothing of it is read (they mount only
/// the member's volume), so the source tenant is not looked up again (it may be gone by then).
fn swap_source(tenant: &Tenant) -> (String, String) {
    (build::claim_name(tenant), tenant.owner.uid.clone())
}

/// The backup volume holding the snapshot and the uid its metadata must name: this tenant's,
/// or the `restoreFrom` tenant's (whose member volumes are made here, first); or why not.
async fn source(
    client: &Client,
    tenant: &Tenant,
    restore: &RestoreStatus,
) -> Result<Result<(String, String), String>, Error> {
    let Some(source) = &restore.source else {
        return Ok(Ok((build::claim_name(tenant), tenant.owner.uid.clone())));
    };
    let tcps: Api<TenantControlPlane> = Api::namespaced(client.clone(), &tenant.namespace);
    let found =
        tcps.get_opt(source)
            .await
            .map_err(Error::kube("get", "TenantControlPlane", source))?;
    let Some(uid) = found.and_then(|t| t.metadata.uid) else {
        return Ok(Err(format!(
            "TenantControlPlane {source}, whose backup volume holds the snapshot, is not in \
             namespace {}",
            tenant.namespace
        )));
    };
    for member in etcd::member_names(tenant) {
        apply::apply(client, &etcd::member_claim(tenant, &member)?).await?;
    }
    Ok(Ok((format!("{source}-etcd-backups"), uid)))
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

/// The Jobs of this attempt's `stage`.
async fn jobs_of(
    client: &Client,
    tenant: &Tenant,
    restore: &RestoreStatus,
    stage: RestoreStage,
) -> Result<Vec<Job>, Error> {
    let want = attempt_value(restore, stage);
    Ok(
        super::backup::tenant_jobs(client, tenant, build::RESTORE_COMPONENT)
            .await?
            .into_iter()
            .filter(|j| j.annotations().get(ATTEMPT_ANNOTATION) == Some(&want))
            .collect(),
    )
}

/// A restore Job of this tenant, of any attempt, still running.
async fn running_restore_job(client: &Client, tenant: &Tenant) -> Result<Option<String>, Error> {
    Ok(
        super::backup::tenant_jobs(client, tenant, build::RESTORE_COMPONENT)
            .await?
            .iter()
            .find(|j| super::backup::finished(j).is_none())
            .map(kube::ResourceExt::name_any),
    )
}

/// `<stage>/<attempt>`: which Jobs are whose.
fn attempt_value(restore: &RestoreStatus, stage: RestoreStage) -> String {
    format!(
        "{}/{}",
        stage_word(stage),
        restore.attempt.as_deref().unwrap_or_default()
    )
}

fn stage_word(stage: RestoreStage) -> &'static str {
    match stage {
        RestoreStage::Prepare => "restore",
        RestoreStage::Swap => "swap",
    }
}

/// One Job per etcd member for `stage` of this attempt (`<tcp>-restore-<i>-<attempt>` or
/// `<tcp>-swap-<i>-<attempt>`); one already there is taken as started.
async fn start_jobs(
    client: &Client,
    tenant: &Tenant,
    restore: &RestoreStatus,
    stage: RestoreStage,
    (claim, uid, image): (&str, &str, &str),
) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(client.clone(), &tenant.namespace);
    let attempt = restore.attempt.clone().unwrap_or_default();
    for (i, member) in etcd::member_names(tenant).iter().enumerate() {
        let suffix = format!("-{}-{i}-{attempt}", stage_word(stage));
        let cut: String = tenant.name.chars().take(63 - suffix.len()).collect();
        let name = format!("{}{suffix}", cut.trim_end_matches('-'));
        let mut job = build::restore_job(
            tenant,
            stage,
            &RestoreInputs {
                job: &name,
                member,
                snapshot: &restore.snapshot,
                claim,
                uid,
                stamp: &attempt,
                operator_image: image,
            },
        )?;
        job.annotations_mut()
            .insert(ATTEMPT_ANNOTATION.to_owned(), attempt_value(restore, stage));
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

    fn current_now(tcp: &TenantControlPlane) -> Option<RestoreStatus> {
        current(tcp, "2026-11-23T12:00:00Z".parse().unwrap())
    }

    fn status(request: &str, step: RestoreStep) -> RestoreStatus {
        RestoreStatus {
            request: request.into(),
            source: None,
            snapshot: request.split('#').next().unwrap().into(),
            attempt: Some("20261123-110000".into()),
            step,
            message: String::new(),
        }
    }

    #[test]
    fn a_new_value_starts_a_restore_and_a_served_one_does_not() {
        assert_eq!(current_now(&tcp(None, None)), None);
        let new = current_now(&tcp(Some("t-20261123-120000.db#2"), None)).unwrap();
        assert_eq!(new.snapshot, "t-20261123-120000.db");
        assert_eq!(new.step, RestoreStep::Stopping);
        let served = status("a.db", RestoreStep::Succeeded);
        let again = current_now(&tcp(Some("a.db"), Some(served.clone()))).unwrap();
        assert_eq!(again, served, "the same value is not restored twice");
        assert_eq!(
            current_now(&tcp(Some("a.db#2"), Some(served)))
                .unwrap()
                .step,
            RestoreStep::Stopping
        );
    }

    #[test]
    fn one_in_progress_goes_on_even_if_the_annotation_changes_or_goes() {
        let running = status("a.db", RestoreStep::Restoring);
        assert_eq!(
            current_now(&tcp(None, Some(running.clone()))),
            Some(running.clone())
        );
        assert_eq!(
            current_now(&tcp(Some("b.db"), Some(running.clone()))),
            Some(running.clone())
        );
        assert!(stops_etcd(Some(&running)));
        assert!(!stops_etcd(Some(&status("a.db", RestoreStep::Starting))));
    }
}
