//! Backups copied to an S3-compatible store (`spec.backup.s3`, issue 9): gofakes3 (in memory,
//! built from its Go module by e2e/seed/build-binaries) runs as a pod in the test namespace; the
//! backup Job's copy is fetched back from it and compared with the snapshot the status names.
//! gofakes3 does not check request signatures: that the Job signs with the Secret's keys is not
//! shown here, only that it reads them (a missing Secret stops the backup with a Condition).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{Attempt, TestEnv, http_client, poll_until, restricted};
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service};

const BUCKET: &str = "backups";
const CREDENTIALS: &str = "s3-credentials";

/// gofakes3 as pod and Service `s3` (port 9000) with bucket `backups`; its ClusterIP.
async fn start_store(env: &TestEnv) -> Result<String> {
    let version = hostplane_e2e::pinned("GOFAKES3_VERSION").context("GOFAKES3_VERSION")?;
    let labels = serde_json::json!({"app.kubernetes.io/name": "e2e-s3"});
    let spec: PodSpec = serde_json::from_value(serde_json::json!({
        "containers": [{
            "name": "s3",
            "image": format!("hostplane.dev/e2e/gofakes3:v{version}"),
            "imagePullPolicy": env.config.image_pull_policy,
            "command": ["/usr/local/bin/gofakes3"],
            "args": ["-backend", "memory", "-initialbucket", BUCKET, "-host", ":9000"],
            "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1},
        }],
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
    }))?;
    let pod = Pod {
        metadata: serde_json::from_value(serde_json::json!({"name": "s3", "labels": labels}))?,
        spec: Some(restricted(spec)),
        ..Pod::default()
    };
    env.create(&pod).await?;
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s3"},
        "spec": {"selector": labels, "ports": [{"port": 9000, "targetPort": 9000}]},
    }))?;
    env.create(&service).await?;
    poll_until(
        "the S3 store pod is Ready",
        Duration::from_secs(90),
        || async {
            let out = env
                .kubectl(&[
                    "get",
                    "pod/s3",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .await?
                .ok()?;
            Ok(if out.stdout.trim() == "True" {
                Attempt::Done(())
            } else {
                Attempt::NotYet(out.stdout)
            })
        },
    )
    .await?;
    let ip = env
        .kubectl(&["get", "svc/s3", "-o", "jsonpath={.spec.clusterIP}"])
        .await?
        .ok()?
        .stdout;
    Ok(ip.trim().to_owned())
}

/// Reason and message of tcp/`tcp`'s BackupReady, once `done` says so.
async fn wait_backup_condition(
    env: &TestEnv,
    tcp: &str,
    what: &str,
    done: impl Fn(&str, &str) -> bool,
) -> Result<(String, String)> {
    poll_until(
        &format!("tcp/{tcp}: BackupReady {what}"),
        Duration::from_secs(180),
        || async {
            let out = env
                .kubectl(&[
                    "get",
                    &format!("tcp/{tcp}"),
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"BackupReady\")].reason}|{.status.conditions[?(@.type==\"BackupReady\")].message}",
                ])
                .await?
                .ok()?;
            let (reason, message) = out.stdout.split_once('|').unwrap_or_default();
            Ok(if done(reason, message) {
                Attempt::Done((reason.to_owned(), message.to_owned()))
            } else {
                Attempt::NotYet(out.stdout.clone())
            })
        },
    )
    .await
}

/// GET of an object from the store, from this process.
async fn object(store_ip: &str, key: &str) -> Result<Vec<u8>> {
    let url = format!("http://{store_ip}:9000/{BUCKET}/{key}");
    let response = http_client()?.get(&url).send().await?;
    ensure!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    Ok(response.bytes().await?.to_vec())
}

/// The copy of status.backup.lastSnapshot in the store at `ip` is the snapshot, byte for byte
/// (its size and SHA-256 as the status has them), and its metadata names the tenant.
async fn assert_copied(ip: &str, ns: &str, tcp: &str, status: &serde_json::Value) -> Result<()> {
    let snapshot = status["lastSnapshot"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let stem = snapshot.trim_end_matches(".db");
    let key = format!("{ns}/{tcp}/{snapshot}");
    ensure!(
        status["lastSnapshot"]["uploadedTo"] == format!("s3://{BUCKET}/{key}").as_str(),
        "status.backup.lastSnapshot does not say where it was copied: {status}"
    );
    let db = object(ip, &key).await?;
    let size = status["lastSnapshot"]["sizeBytes"].as_u64().unwrap_or(0);
    let content = db.get(..db.len().saturating_sub(32)).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    let hex = digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    ensure!(
        db.len() as u64 == size && status["lastSnapshot"]["sha256"] == hex.as_str(),
        "the copy in the store ({} bytes, SHA-256 {hex}) is not the snapshot: {status}",
        db.len()
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&object(ip, &format!("{ns}/{tcp}/{stem}.json")).await?)?;
    ensure!(
        metadata["tenant"] == format!("{ns}/{tcp}").as_str()
            && metadata["name"] == snapshot.as_str(),
        "the metadata copied beside it does not name the tenant and snapshot: {metadata}"
    );

    Ok(())
}

/// tcp/`tcp` (Ready, with `spec.backup`, its last snapshot `last`) copies its next snapshot and
/// its metadata to the store: not before the credentials Secret exists (a Condition says which),
/// then byte for byte; a bucket that does not exist fails the backup with the store's reason,
/// the snapshot kept on the volume.
pub async fn snapshots_are_copied_to_the_store(env: &TestEnv, tcp: &str, last: &str) -> Result<()> {
    let ip = start_store(env).await?;
    let ns = env.namespace();
    let s3 = |bucket: &str| {
        format!(
            r#"{{"backup":{{"schedule":null,"s3":{{"endpoint":"http://s3.{ns}.svc:9000","bucket":"{bucket}","credentialsSecretRef":{{"name":"{CREDENTIALS}"}}}}}}}}"#
        )
    };
    super::patch_spec(env, tcp, &s3(BUCKET)).await?;
    let annotate = |value| super::annotate(env, tcp, "hostplane.dev/backup-now", value);
    annotate("s3-1").await?;
    let (_, message) = wait_backup_condition(env, tcp, "S3CredentialsMissing", |reason, _| {
        reason == "S3CredentialsMissing"
    })
    .await?;
    ensure!(
        message.contains(&format!("Secret {CREDENTIALS} does not exist"))
            && message.contains("kubectl"),
        "the condition does not say which Secret to create and how: {message}"
    );
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        CREDENTIALS,
        "--from-literal=AWS_ACCESS_KEY_ID=e2e",
        "--from-literal=AWS_SECRET_ACCESS_KEY=e2e-secret",
    ])
    .await?
    .ok()?;
    // The operator looks again within a minute (the Secret is no child of the TCP). A scheduled
    // snapshot taken before the schedule was removed may land first: wait for the copied one.
    let status = poll_until(
        &format!("tcp/{tcp} has a snapshot of request s3-1 copied to the store"),
        Duration::from_secs(180),
        || async {
            let status = super::day2::backup_status(env, tcp).await?;
            let name = status["lastSnapshot"]["name"].as_str().unwrap_or_default();
            Ok(
                if name > last
                    && status["lastRequest"] == "s3-1"
                    && status["lastSnapshot"]["uploadedTo"].is_string()
                {
                    Attempt::Done(status)
                } else {
                    Attempt::NotYet(status.to_string())
                },
            )
        },
    )
    .await?;
    assert_copied(&ip, ns, tcp, &status).await?;

    // A bucket that is not there: the Job fails with the store's reason; the volume keeps it.
    super::patch_spec(env, tcp, &s3("no-such-bucket")).await?;
    annotate("s3-2").await?;
    let (_, message) = wait_backup_condition(env, tcp, "BackupFailed", |reason, message| {
        reason == "BackupFailed" && message.contains("no-such-bucket")
    })
    .await?;
    ensure!(
        message.contains("NoSuchBucket") && message.contains("kept on the volume"),
        "the failure does not give the store's reason and what was kept: {message}"
    );
    Ok(())
}
