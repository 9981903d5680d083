//! Backups of the tenant's etcd: the volume that holds the snapshots and the Job that takes one.
//! The Job's init container is `etcdctl snapshot save` (the etcd image) against the first etcd
//! member, with the API server's etcd client certificate; its container is the operator's own
//! image running `hostplane-operator snapshot-finish` (crate::snapshot), which checks the snapshot,
//! names it, writes its metadata and prunes the oldest. Its termination message is the snapshot's
//! JSON, which the operator copies into the status.

use hostplane_api::v1alpha1::{BackupS3, BackupSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;

use super::pod::{container_security, pod_security, secret_volume, typed};
use super::{BuildError, Tenant, etcd};
use crate::pki::{CA_CRT, Item, TLS_CRT, TLS_KEY};
use crate::snapshot::{RESTORING, SAVING_SUFFIX};

pub const COMPONENT: &str = "etcd-backup";
/// Where the backup volume is mounted in the Job.
pub const BACKUP_DIR: &str = "/backups";
const PKI: &str = "/etc/etcd/pki/client";
/// The Job's containers: the one that saves, the one that checks and keeps.
pub const SAVE: &str = "save";
pub const FINISH: &str = "finish";
/// The restore Job's component label and containers: check, restore, swap.
pub const RESTORE_COMPONENT: &str = "etcd-restore";
/// Where an etcd member's volume is mounted (as in the StatefulSet).
const MEMBER_DIR: &str = "/var/lib/etcd";

/// `<tcp>-etcd-backups`: the PersistentVolumeClaim of the snapshots.
pub fn claim_name(tenant: &Tenant) -> String {
    format!("{}-etcd-backups", tenant.name)
}

/// The snapshots' volume (ReadWriteOnce), owned by the TenantControlPlane: it goes with it.
pub fn volume_claim(
    tenant: &Tenant,
    spec: &BackupSpec,
) -> Result<PersistentVolumeClaim, BuildError> {
    let mut claim: PersistentVolumeClaim = typed(
        "backup PersistentVolumeClaim",
        json!({"spec": etcd::claim_spec(&spec.storage)}),
    )?;
    claim.metadata = tenant.meta(&claim_name(tenant), COMPONENT);
    Ok(claim)
}

/// The keys of the `spec.backup.s3` credentials Secret the backup Job reads.
pub const S3_CREDENTIAL_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// What the keys of a tenant's objects in the S3 store start with: `prefix`, or
/// `<namespace>/<name>/`.
pub fn s3_prefix(tenant: &Tenant, s3: &BackupS3) -> String {
    s3.prefix
        .clone()
        .unwrap_or_else(|| format!("{}/{}/", tenant.namespace, tenant.name))
}

/// What one backup Job is: its name, the snapshot's name (`<tcp>-<YYYYMMDD-HHMMSS>`, without
/// `.db`), and the image of the operator (which runs `snapshot-finish`).
pub struct JobInputs<'a> {
    pub job: &'a str,
    pub snapshot: &'a str,
    pub operator_image: &'a str,
}

/// The Job that takes one snapshot. It retries once; it is removed a day after it finished (the
/// operator has copied its result into the status by then: it watches its Jobs).
pub fn job(tenant: &Tenant, spec: &BackupSpec, inputs: &JobInputs<'_>) -> Result<Job, BuildError> {
    let (pki_vol, pki_mount) = secret_volume(
        "etcd-client",
        &Item::ApiserverEtcdClient.secret_name(&tenant.name),
        &[TLS_CRT, TLS_KEY, CA_CRT],
        PKI,
    );
    let endpoint = etcd::client_urls(tenant)
        .into_iter()
        .next()
        .ok_or(BuildError::EtcdMode)?;
    let backups_mount = json!({"name": "backups", "mountPath": BACKUP_DIR});
    let saving = format!("{BACKUP_DIR}/{}{SAVING_SUFFIX}", inputs.snapshot);
    let mut finish_args = vec![
        "snapshot-finish".to_owned(),
        "--dir".to_owned(),
        BACKUP_DIR.to_owned(),
        "--name".to_owned(),
        inputs.snapshot.to_owned(),
        "--tenant".to_owned(),
        format!("{}/{}", tenant.namespace, tenant.name),
        "--uid".to_owned(),
        tenant.owner.uid.clone(),
        "--retain".to_owned(),
        spec.retain.to_string(),
    ];
    let mut finish_env = Vec::new();
    if let Some(s3) = &spec.s3 {
        finish_args.extend([
            "--s3-endpoint".to_owned(),
            s3.endpoint.trim_end_matches('/').to_owned(),
            "--s3-bucket".to_owned(),
            s3.bucket.clone(),
            "--s3-region".to_owned(),
            s3.region.clone(),
            "--s3-prefix".to_owned(),
            s3_prefix(tenant, s3),
        ]);
        // From the user's Secret, never through the operator (a missing key is found by
        // `controller::backup` before the Job is made).
        for key in S3_CREDENTIAL_KEYS {
            finish_env.push(json!({"name": key, "valueFrom": {"secretKeyRef": {
                "name": s3.credentials_secret_ref.name, "key": key}}}));
        }
    }
    let mut job: Job = typed(
        "backup Job",
        json!({
            "spec": {
                "backoffLimit": 1,
                "activeDeadlineSeconds": 900,
                "ttlSecondsAfterFinished": 86_400,
                "template": {
                    "metadata": {"labels": tenant.labels(COMPONENT)},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        "initContainers": [{
                            "name": SAVE,
                            "image": tenant.image(&format!("etcd:{}", super::etcd_image_tag())),
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["etcdctl"],
                            "args": [
                                format!("--endpoints={endpoint}"),
                                format!("--cacert={PKI}/{CA_CRT}"),
                                format!("--cert={PKI}/{TLS_CRT}"),
                                format!("--key={PKI}/{TLS_KEY}"),
                                "snapshot", "save", saving,
                            ],
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": container_security(),
                            "volumeMounts": [pki_mount, backups_mount],
                        }],
                        "containers": [{
                            "name": FINISH,
                            "image": inputs.operator_image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["hostplane-operator"],
                            "args": finish_args,
                            "env": finish_env,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": container_security(),
                            "volumeMounts": [backups_mount],
                        }],
                        "volumes": [
                            pki_vol,
                            {"name": "backups", "persistentVolumeClaim": {"claimName": claim_name(tenant)}},
                        ],
                    },
                },
            },
        }),
    )?;
    job.metadata = tenant.meta(inputs.job, COMPONENT);
    Ok(job)
}

/// What one restore Job is: its name, the member it restores (`<tcp>-etcd-<i>`), the snapshot
/// file (`<name>.db`) on the backup volume `claim` of the tenant with `uid` (this one's, or the
/// `restoreFrom` tenant's), the attempt's stamp (the old data's name), and the operator's image.
pub struct RestoreInputs<'a> {
    pub job: &'a str,
    pub member: &'a str,
    pub snapshot: &'a str,
    pub claim: &'a str,
    pub uid: &'a str,
    pub stamp: &'a str,
    pub operator_image: &'a str,
}

/// The two Jobs of a member's restore, run while etcd is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreStage {
    /// `restore-check` (the snapshot is whole and this tenant's; nothing touched otherwise),
    /// then `etcdutl snapshot restore` into `data.restoring` (revisions bumped and marked
    /// compacted, so that clients re-list instead of watching from revisions the restore took
    /// back). Not retried: a failure is reported, and the member's data is untouched.
    Prepare,
    /// Once every member's Prepare Job completed: `restore-swap` puts `data.restoring` in place
    /// of `data`, kept aside. It can run again, so it is retried.
    Swap,
}

/// A member's Job of `stage`.
pub fn restore_job(
    tenant: &Tenant,
    stage: RestoreStage,
    inputs: &RestoreInputs<'_>,
) -> Result<Job, BuildError> {
    let backups = json!({"name": "backups", "mountPath": BACKUP_DIR, "readOnly": true});
    let data = json!({"name": "data", "mountPath": MEMBER_DIR});
    let operator = |name: &str, args: Vec<String>, mounts: serde_json::Value| {
        json!({
            "name": name,
            "image": inputs.operator_image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["hostplane-operator"],
            "args": args,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": container_security(),
            "volumeMounts": mounts,
        })
    };
    let data_volume = json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{}", inputs.member)}});
    let (init, containers, volumes, retries) = match stage {
        RestoreStage::Prepare => {
            let check = operator(
                "check",
                vec![
                    "restore-check".into(),
                    "--dir".into(),
                    BACKUP_DIR.into(),
                    "--name".into(),
                    inputs.snapshot.into(),
                    "--uid".into(),
                    inputs.uid.into(),
                    "--member".into(),
                    MEMBER_DIR.into(),
                ],
                json!([backups, data]),
            );
            let restore = json!({
                "name": "restore",
                "image": tenant.image(&format!("etcd:{}", super::etcd_image_tag())),
                "imagePullPolicy": "IfNotPresent",
                "command": ["etcdutl"],
                "args": [
                    "snapshot", "restore", format!("{BACKUP_DIR}/{}", inputs.snapshot),
                    format!("--data-dir={MEMBER_DIR}/{RESTORING}"),
                    format!("--name={}", inputs.member),
                    format!("--initial-cluster={}", etcd::initial_cluster(tenant).join(",")),
                    format!("--initial-cluster-token={}", tenant.name),
                    format!("--initial-advertise-peer-urls={}", etcd::peer_url(tenant, inputs.member)),
                    "--bump-revision=1000000000",
                    "--mark-compacted",
                ],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": container_security(),
                "volumeMounts": [backups, data],
            });
            let backups_volume = json!({"name": "backups", "persistentVolumeClaim": {"claimName": inputs.claim, "readOnly": true}});
            (
                json!([check]),
                json!([restore]),
                json!([backups_volume, data_volume]),
                0,
            )
        }
        RestoreStage::Swap => {
            let swap = operator(
                "swap",
                vec![
                    "restore-swap".into(),
                    "--member".into(),
                    MEMBER_DIR.into(),
                    "--stamp".into(),
                    inputs.stamp.into(),
                ],
                json!([data]),
            );
            (json!([]), json!([swap]), json!([data_volume]), 2)
        }
    };
    let mut job: Job = typed(
        "restore Job",
        json!({
            "spec": {
                "backoffLimit": retries,
                "activeDeadlineSeconds": 900,
                "ttlSecondsAfterFinished": 86_400,
                "template": {
                    "metadata": {"labels": tenant.labels(RESTORE_COMPONENT)},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        "initContainers": init,
                        "containers": containers,
                        "volumes": volumes,
                    },
                },
            },
        }),
    )?;
    job.metadata = tenant.meta(inputs.job, RESTORE_COMPONENT);
    Ok(job)
}
