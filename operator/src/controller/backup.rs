//! Backups at the edge: the snapshots' volume, the Jobs that take them (started when
//! `crate::backup::plan` says one is due, one at a time), and their results read back from the
//! Jobs' pods into `status.backup` and the `BackupReady` condition.

use hostplane_api::v1alpha1::{
    BACKUP_NOW_ANNOTATION, BackupSpec, BackupStatus, Snapshot, TenantControlPlane,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt as _};

use super::apply;
use super::error::Error;
use crate::backup::{self as plan, Request};
use crate::build::backup::{self as build, FINISH, JobInputs};
use crate::build::{TENANT_LABEL, Tenant};
use crate::status::{BACKUP_READY, Observed};

/// The annotation on a backup Job naming its snapshot (`<tcp>-<YYYYMMDD-HHMMSS>`).
const SNAPSHOT_ANNOTATION: &str = "hostplane.dev/snapshot";

/// What a pass found and did.
pub struct BackupState {
    pub status: BackupStatus,
    pub condition: Observed,
    /// The schedule's next occurrence.
    pub next: Option<Timestamp>,
}

/// With `spec.backup`: `ensure`, its condition and status put into the observation. Returns the
/// schedule's next occurrence.
pub(super) async fn observe(
    ctx: &super::Context,
    tcp: &TenantControlPlane,
    tenant: &Tenant,
    observation: &mut super::Observation,
) -> Result<Option<Timestamp>, Error> {
    // The cached object answers whether there is anything to do (no GET for tenants without
    // backups). What is done is decided on a fresh read: a pass can run on a TenantControlPlane
    // read before the previous pass's status write (seen in CI: a request served twice, its
    // second snapshot pruning one the test kept); and spec, request annotation and status must
    // come from the same read (seen in CI: with the cached spec, a request made right after a
    // spec change ran with the spec before it and copied to the old bucket).
    if tcp.spec.backup.is_none() {
        return Ok(None);
    }
    let name = tcp.name_any();
    let fresh = Api::<TenantControlPlane>::namespaced(ctx.client.clone(), &tenant.namespace)
        .get(&name)
        .await
        .map_err(Error::kube("get", "TenantControlPlane", &name))?;
    let Some(spec) = fresh.spec.backup.as_ref() else {
        return Ok(None);
    };
    let state = ensure(
        &ctx.client,
        &fresh,
        tenant,
        spec,
        ctx.settings.operator_image.as_deref(),
    )
    .await?;
    observation.conditions.push(state.condition);
    observation.backup = Some(state.status);
    Ok(state.next)
}

/// Applies the volume, reads the Jobs, starts the one that is due. `tcp` is read fresh from the
/// API server and `spec` is its `spec.backup` (see `observe`). `operator_image` runs the Jobs'
/// check step; without it no Job starts and the condition says why.
pub async fn ensure(
    client: &Client,
    tcp: &TenantControlPlane,
    tenant: &Tenant,
    spec: &BackupSpec,
    operator_image: Option<&str>,
) -> Result<BackupState, Error> {
    // The Jobs are listed fresh too, so what is due and what runs agree.
    let old = tcp
        .status
        .as_ref()
        .and_then(|s| s.backup.clone())
        .unwrap_or_default();
    apply::apply(client, &build::volume_claim(tenant, spec)?).await?;
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &tenant.namespace);
    let mut jobs = tenant_jobs(client, tenant, build::COMPONENT).await?;
    jobs.sort_by_key(snapshot_of);
    let mut status = BackupStatus {
        volume_claim_name: Some(build::claim_name(tenant)),
        ..old.clone()
    };
    let mut condition = last_result(client, tcp, tenant, &jobs, &mut status).await?;

    let created = tcp
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let requested = tcp
        .annotations()
        .get(BACKUP_NOW_ANNOTATION)
        .map(String::as_str);
    let now = Timestamp::now();
    let planned = plan::plan(spec, Some(&old), requested, created, now)
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let taking = if let Some(job) = jobs.iter().find(|j| finished(j).is_none()) {
        Some(snapshot_of(job))
    } else if let Some(request) = planned.due {
        let Some(image) = operator_image else {
            return Ok(BackupState {
                status,
                condition: Observed::new(
                    BACKUP_READY,
                    false,
                    "OperatorImageUnknown",
                    "a backup is due but the operator does not know its own image, which the \
                     backup Job runs: set HOSTPLANE_IMAGE in the operator's Deployment",
                ),
                next: planned.next,
            });
        };
        if let Some(problem) = s3_credentials_problem(client, tenant, spec).await? {
            // The user's Secret is no child of the TCP: no watch event says when it is made.
            let soon = now + k8s_openapi::jiff::SignedDuration::from_secs(60);
            return Ok(BackupState {
                status,
                condition: Observed::new(BACKUP_READY, false, "S3CredentialsMissing", problem),
                next: Some(planned.next.map_or(soon, |next| next.min(soon))),
            });
        }
        let snapshot = format!("{}-{}", tenant.name, now.strftime("%Y%m%d-%H%M%S"));
        let last = status.last_snapshot.as_ref().map(|s| s.name.as_str());
        start(&jobs_api, tenant, spec, (&request, last), &snapshot, image).await?;
        match request {
            Request::Scheduled(at) => status.last_scheduled = Some(at.to_string()),
            Request::OnDemand(value) => status.last_request = Some(value),
        }
        Some(snapshot)
    } else {
        None
    };
    if let Some(snapshot) = taking {
        "InProgress".clone_into(&mut condition.reason);
        condition.message = format!("taking snapshot {snapshot}; {}", condition.message);
    }
    if let Some(next) = planned.next {
        condition.message = format!("{}; next scheduled backup at {next}", condition.message);
    }
    Ok(BackupState {
        status,
        condition,
        next: planned.next,
    })
}

/// Why the Secret `spec.backup.s3` names cannot give the backup Job its credentials, if it
/// cannot (the Job would hang in CreateContainerConfigError otherwise).
async fn s3_credentials_problem(
    client: &Client,
    tenant: &Tenant,
    spec: &BackupSpec,
) -> Result<Option<String>, Error> {
    let Some(s3) = &spec.s3 else {
        return Ok(None);
    };
    let name = &s3.credentials_secret_ref.name;
    let secret = Api::<Secret>::namespaced(client.clone(), &tenant.namespace)
        .get_opt(name)
        .await
        .map_err(Error::kube("get", "Secret", name))?;
    let missing: Vec<&str> = build::S3_CREDENTIAL_KEYS
        .into_iter()
        .filter(|key| {
            secret
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .and_then(|data| data.get(*key))
                .is_none_or(|value| value.0.is_empty())
        })
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let what = if secret.is_none() {
        format!("Secret {name} does not exist")
    } else {
        format!("Secret {name} has no {}", missing.join(" and no "))
    };
    Ok(Some(format!(
        "a backup is due but {what} (spec.backup.s3.credentialsSecretRef): no snapshot is \
         taken until it does; create it with `kubectl -n {} create secret generic {name} \
         --from-literal=AWS_ACCESS_KEY_ID=<key id> --from-literal=AWS_SECRET_ACCESS_KEY=<secret>`",
        tenant.namespace
    )))
}

/// The condition the newest finished Job makes. A success newer than the status's snapshot is
/// read from its pod once (into `status`); a failure's reason once, then kept in the condition.
async fn last_result(
    client: &Client,
    tcp: &TenantControlPlane,
    tenant: &Tenant,
    jobs: &[Job],
    status: &mut BackupStatus,
) -> Result<Observed, Error> {
    let Some((job, ok)) = jobs
        .iter()
        .rev()
        .find_map(|j| finished(j).map(|ok| (j, ok)))
    else {
        return Ok(Observed::new(
            BACKUP_READY,
            false,
            "NoSnapshotYet",
            "no snapshot taken yet",
        ));
    };
    let name = job.name_any();
    if ok {
        let newer = status
            .last_snapshot
            .as_ref()
            .is_none_or(|s| s.name < format!("{}.db", snapshot_of(job)));
        if newer {
            match read_result(client, tenant, job).await? {
                Ok(snapshot) => status.last_snapshot = Some(snapshot),
                Err(why) => {
                    return Ok(Observed::new(
                        BACKUP_READY,
                        false,
                        "ResultUnreadable",
                        format!(
                            "backup Job {name} succeeded but {why}; the snapshot may be on the \
                             volume all the same"
                        ),
                    ));
                }
            }
        }
        let s = status.last_snapshot.clone().unwrap_or_default();
        return Ok(Observed::new(
            BACKUP_READY,
            true,
            "Snapshotted",
            format!(
                "last snapshot {} ({} bytes, taken {}) on PersistentVolumeClaim {}{}",
                s.name,
                s.size_bytes,
                s.taken_at,
                build::claim_name(tenant),
                s.uploaded_to
                    .as_ref()
                    .map(|to| format!(", copied to {to}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let known = tcp
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == BACKUP_READY))
        .filter(|c| c.message.contains(&name));
    let message = if let Some(c) = known {
        c.message.clone()
    } else {
        let why = read_result(client, tenant, job)
            .await?
            .err()
            .unwrap_or_else(|| "it reported no reason".to_owned());
        format!(
            "backup Job {name} failed: {why}. The next scheduled backup tries again; to try now: \
             kubectl annotate --overwrite tcp/{} {BACKUP_NOW_ANNOTATION}=\"$(date +%s)\"",
            tenant.name
        )
    };
    Ok(Observed::new(BACKUP_READY, false, "BackupFailed", message))
}

/// Creates the Job of `request` that saves `snapshot`; one created by an earlier pass (whose
/// status write did not land) is taken as started.
async fn start(
    jobs: &Api<Job>,
    tenant: &Tenant,
    spec: &BackupSpec,
    (request, last): (&Request, Option<&str>),
    snapshot: &str,
    image: &str,
) -> Result<(), Error> {
    let job_name = job_name(&tenant.name, request, last);
    let mut job = build::job(
        tenant,
        spec,
        &JobInputs {
            job: &job_name,
            snapshot,
            operator_image: image,
        },
    )?;
    job.annotations_mut()
        .insert(SNAPSHOT_ANNOTATION.to_owned(), snapshot.to_owned());
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(Error::kube("create", "Job", &job_name)(e)),
    }
}

/// `<tcp>-backup-<YYYYMMDDHHMM>` for a scheduled one, `<tcp>-backup-now-<8 hex>` for a request;
/// the TCP's name cut so that the Job's name fits a label (63).
fn job_name(tcp: &str, request: &Request, last: Option<&str>) -> String {
    // One Job per occurrence, or per request value and the last snapshot before it, however
    // many passes start it (a pass may run on a TenantControlPlane read before the previous
    // pass's status write: it must find that Job, not make a second). A value used again after
    // other snapshots is a new backup.
    let suffix = match request {
        Request::Scheduled(at) => at.strftime("%Y%m%d%H%M").to_string(),
        Request::OnDemand(value) => {
            let key = format!("{value}\n{}", last.unwrap_or_default());
            let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
            format!(
                "now-{}",
                crate::snapshot::hex(digest.as_ref().get(..4).unwrap_or_default())
            )
        }
    };
    let cut: String = tcp
        .chars()
        .take(63 - "-backup-".len() - suffix.len())
        .collect();
    format!("{}-backup-{suffix}", cut.trim_end_matches('-'))
}

/// The tenant's Jobs of `component` (backups, restores), listed from the API server.
pub(super) async fn tenant_jobs(
    client: &Client,
    tenant: &Tenant,
    component: &str,
) -> Result<Vec<Job>, Error> {
    let selector = format!(
        "{TENANT_LABEL}={},app.kubernetes.io/component={component}",
        tenant.name
    );
    Ok(Api::<Job>::namespaced(client.clone(), &tenant.namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list", "Job", &selector))?
        .items)
}

fn snapshot_of(job: &Job) -> String {
    job.annotations()
        .get(SNAPSHOT_ANNOTATION)
        .cloned()
        .unwrap_or_default()
}

/// `Some(true)` once the Job completed, `Some(false)` once it failed for good, `None` while it
/// runs.
pub(super) fn finished(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some(true),
            "Failed" => Some(false),
            _ => None,
        })
}

/// The snapshot a Job's check step reported (its termination message), or why there is none:
/// the failing container's message (etcdctl's log tail, or the check's refusal).
pub(super) async fn read_result(
    client: &Client,
    tenant: &Tenant,
    job: &Job,
) -> Result<Result<Snapshot, String>, Error> {
    let name = job.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &tenant.namespace);
    let selector = format!("batch.kubernetes.io/job-name={name}");
    let mut pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list", "Pod", &selector))?
        .items;
    // The newest attempt last.
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let mut why = format!("no pod of Job {name} is left to tell why");
    for pod in pods.iter().rev() {
        let Some(pod_status) = &pod.status else {
            continue;
        };
        let states = pod_status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(pod_status.container_statuses.iter().flatten());
        for container in states {
            let Some(done) = container.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                continue;
            };
            let message = done.message.clone().unwrap_or_default();
            if container.name == FINISH && done.exit_code == 0 {
                return Ok(serde_json::from_str::<Snapshot>(message.trim())
                    .map_err(|e| format!("its result {message:?} is not a snapshot's JSON: {e}")));
            }
            if done.exit_code != 0 {
                why = format!(
                    "container {} exited with {}: {}",
                    container.name,
                    done.exit_code,
                    message.trim()
                );
            }
        }
    }
    Ok(Err(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_a_label_and_say_what_they_are() {
        let at: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        assert_eq!(
            job_name("demo", &Request::Scheduled(at), None),
            "demo-backup-202611231200"
        );
        // Two passes serving one request find one Job; the same value after other snapshots is
        // another Job.
        let request = Request::OnDemand("before-upgrade".into());
        let first = job_name("demo", &request, Some("demo-1.db"));
        assert!(
            first.starts_with("demo-backup-now-") && first.len() == 24,
            "{first}"
        );
        assert_eq!(first, job_name("demo", &request, Some("demo-1.db")));
        assert_ne!(first, job_name("demo", &request, Some("demo-2.db")));
        let long = "a".repeat(60);
        assert!(job_name(&long, &Request::Scheduled(at), None).len() <= 63);
        assert!(job_name(&long, &request, None).len() <= 63);
    }
}
