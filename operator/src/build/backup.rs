//! Backups of the tenant's etcd: the volume that holds the snapshots and the Job that takes one.
//! The Job's init container is `etcdctl snapshot save` (the etcd image) against the first etcd
//! member, with the API server's etcd client certificate; its container is the operator's own
//! image running `hostplane-operator snapshot-finish` (crate::snapshot), which checks the snapshot,
//! names it, writes its metadata and prunes the oldest. Its termination message is the snapshot's
//! JSON, which the operator copies into the status.

use hostplane_api::v1alpha1::BackupSpec;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;

use super::pod::{container_security, pod_security, secret_volume, typed};
use super::{BuildError, Tenant, etcd};
use crate::pki::{CA_CRT, Item, TLS_CRT, TLS_KEY};
use crate::snapshot::SAVING_SUFFIX;

pub const COMPONENT: &str = "etcd-backup";
/// Where the backup volume is mounted in the Job.
pub const BACKUP_DIR: &str = "/backups";
const PKI: &str = "/etc/etcd/pki/client";
/// The Job's containers: the one that saves, the one that checks and keeps.
pub const SAVE: &str = "save";
pub const FINISH: &str = "finish";

/// `<tcp>-etcd-backups`: the PersistentVolumeClaim of the snapshots.
pub fn claim_name(tenant: &Tenant) -> String {
    format!("{}-etcd-backups", tenant.name)
}

/// The snapshots' volume (ReadWriteOnce), owned by the TenantControlPlane: it goes with it.
pub fn volume_claim(
    tenant: &Tenant,
    spec: &BackupSpec,
) -> Result<PersistentVolumeClaim, BuildError> {
    let mut storage = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    });
    if let Some(class) = &spec.storage.storage_class_name {
        storage["storageClassName"] = json!(class);
    }
    let mut claim: PersistentVolumeClaim =
        typed("backup PersistentVolumeClaim", json!({"spec": storage}))?;
    claim.metadata = tenant.meta(&claim_name(tenant), COMPONENT);
    Ok(claim)
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
                        // The volume may be root's (host-path provisioning ignores fsGroup), as
                        // etcd's own is.
                        "securityContext": pod_security(0),
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
                            "args": [
                                "snapshot-finish",
                                "--dir", BACKUP_DIR,
                                "--name", inputs.snapshot,
                                "--tenant", format!("{}/{}", tenant.namespace, tenant.name),
                                "--uid", tenant.owner.uid,
                                "--retain", spec.retain.to_string(),
                            ],
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
