//! Day 2 (issue 9): hibernation and deletion protection.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{Attempt, CONFIRM_DELETION, TestEnv, install_crds, poll_until};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use super::{OPERATOR, SMALL, Tcp, tenant_client};

/// How long a hibernating tenant may take to stop its pods (their grace periods included).
const SLEEP_TIMEOUT: Duration = Duration::from_secs(180);

/// Sets `spec.hibernation` of tcp/`name` to the JSON `value`.
pub(super) async fn hibernation(env: &TestEnv, name: &str, value: &str) -> Result<()> {
    super::patch_spec(env, name, &format!(r#"{{"hibernation":{value}}}"#)).await
}

/// Waits for phase Hibernated, Ready False with reason Hibernated, and no pod of the tenant.
pub(super) async fn wait_hibernated(env: &TestEnv, name: &str) -> Result<()> {
    let object = format!("tcp/{name}");
    let selector = format!("hostplane.dev/tenant={name}");
    let status = "jsonpath={.status.phase} {.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].reason}";
    poll_until(
        &format!("{object} is Hibernated with no control-plane pod left"),
        SLEEP_TIMEOUT,
        || async {
            let s = env.kubectl(&["get", &object, "-o", status]).await?.ok()?;
            let pods = env
                .kubectl(&["get", "pods", "-l", &selector, "-o", "name"])
                .await?
                .ok()?;
            Ok(
                if s.stdout.trim() == "Hibernated False Hibernated" && pods.stdout.trim().is_empty()
                {
                    Attempt::Done(())
                } else {
                    Attempt::NotYet(format!(
                        "status {:?}, pods {:?}",
                        s.stdout.trim(),
                        pods.stdout.split_whitespace().collect::<Vec<_>>()
                    ))
                },
            )
        },
    )
    .await
}

/// `spec.hibernation.enabled: true` stops every control-plane pod (phase Hibernated, Ready False
/// with reason Hibernated) and keeps etcd's volume; unsetting it wakes the tenant, whose data
/// and kubeconfig (read before it slept) work again.
#[tokio::test]
async fn a_hibernated_tenant_stops_every_pod_keeps_its_volume_and_wakes_with_its_data() -> Result<()>
{
    let _operator = OPERATOR.read().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-hibernate").await?;
    let tcp = Tcp::apply(&env, "h1").await?;
    tcp.wait_ready().await?;
    let kubeconfig = tcp.kubeconfig().await?;
    let marker = hostplane_e2e::random_token();
    let config_maps = Api::<ConfigMap>::namespaced(tenant_client(&kubeconfig).await?, "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "before-sleep"}, "data": {"marker": marker},
    }))?;
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .context("creating a ConfigMap in the tenant")?;
    let pvcs = || async {
        Ok::<_, anyhow::Error>(
            env.kubectl(&[
                "get",
                "pvc",
                "-l",
                "hostplane.dev/tenant=h1",
                "-o",
                "jsonpath={range .items[*]}{.metadata.uid}{\"\\n\"}{end}",
            ])
            .await?
            .ok()?
            .stdout,
        )
    };
    let volumes = pvcs().await?;
    ensure!(
        !volumes.trim().is_empty(),
        "tcp/h1 has no etcd volume claim"
    );

    hibernation(&env, "h1", r#"{"enabled":true}"#).await?;
    wait_hibernated(&env, "h1").await?;
    let (_, message) = tcp.ready_condition().await?;
    ensure!(
        message.contains("spec.hibernation.enabled is true"),
        "the Ready message does not say why the tenant sleeps: {message:?}"
    );
    ensure!(
        pvcs().await? == volumes,
        "etcd's volume claims changed while hibernating: {volumes:?} -> {:?}",
        pvcs().await?
    );

    let woken = Instant::now();
    hibernation(&env, "h1", "null").await?;
    tcp.wait_ready().await?;
    println!(
        "figure: tcp/h1 woke (hibernation unset to Ready) in {:.1} s",
        woken.elapsed().as_secs_f64()
    );
    // The kubeconfig read before it slept works, and the data is there.
    let config_maps = Api::<ConfigMap>::namespaced(tenant_client(&kubeconfig).await?, "default");
    let back = config_maps
        .get("before-sleep")
        .await
        .context("reading the ConfigMap written before hibernation, with the old kubeconfig")?;
    ensure!(
        back.data.as_ref().and_then(|d| d.get("marker")) == Some(&marker),
        "the ConfigMap came back different: {:?}",
        back.data
    );
    ensure!(
        pvcs().await? == volumes,
        "etcd's volume claims changed across hibernation"
    );
    Ok(())
}

/// Deleting a TenantControlPlane, or the namespace that holds one, is refused at admission (the
/// ValidatingAdmissionPolicies of manifests/) until it carries the confirmation annotation; the
/// refusal names the TCP and the command to run. The TCP here is paused: the policies do not
/// depend on the operator, and nothing needs to run.
#[tokio::test]
async fn deleting_a_tenant_or_its_namespace_needs_the_confirmation() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("tcp-delete").await?;
    let ns = env.namespace().to_owned();
    let version = env.config.kubernetes_version.trim_start_matches('v');
    let manifest = format!(
        "apiVersion: hostplane.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: d1\n  annotations:\n    hostplane.dev/paused: \"true\"\nspec:\n  version: \"{version}\"\n"
    );
    let path = std::env::temp_dir().join(format!("tcp-{}.yaml", hostplane_e2e::random_token()));
    std::fs::write(&path, manifest).context("writing the manifest")?;
    let applied = env.kubectl(&["apply", "-f", &path.to_string_lossy()]).await;
    let _ = std::fs::remove_file(&path);
    applied?.ok().context("applying tcp/d1")?;

    let refused = env.kubectl(&["delete", "tcp/d1", "--wait=false"]).await?;
    ensure!(
        !refused.success()
            && refused
                .stderr
                .contains(&format!("TenantControlPlane {ns}/d1 is protected"))
            && refused.stderr.contains(&format!("{CONFIRM_DELETION}=true")),
        "deleting tcp/d1 without the annotation was not refused with a message naming it: \
         exit {}, stderr {:?}",
        refused.status,
        refused.stderr.trim()
    );
    env.kubectl(&["get", "tcp/d1"])
        .await?
        .ok()
        .context("tcp/d1 is gone")?;
    // The namespace too (server-side dry run: admission runs, nothing is deleted).
    let refused = hostplane_e2e::kubectl(&["delete", "namespace", &ns, "--dry-run=server"]).await?;
    ensure!(
        !refused.success()
            && refused
                .stderr
                .contains(&format!("namespace {ns} holds TenantControlPlane d1"))
            && refused.stderr.contains(CONFIRM_DELETION),
        "deleting namespace {ns} holding an unconfirmed tcp/d1 was not refused with a message \
         naming it: exit {}, stderr {:?}",
        refused.status,
        refused.stderr.trim()
    );
    // Another annotation value is no confirmation.
    env.kubectl(&["annotate", "tcp/d1", &format!("{CONFIRM_DELETION}=yes")])
        .await?
        .ok()?;
    ensure!(
        !env.kubectl(&["delete", "tcp/d1", "--dry-run=server"])
            .await?
            .success(),
        "{CONFIRM_DELETION}=yes was taken as a confirmation"
    );

    env.kubectl(&[
        "annotate",
        "--overwrite",
        "tcp/d1",
        &format!("{CONFIRM_DELETION}=true"),
    ])
    .await?
    .ok()?;
    // The policy reads the TenantControlPlanes from its own cache: it sees the annotation a moment
    // later.
    poll_until(
        "deleting the namespace of a confirmed tcp/d1 is allowed (dry run)",
        Duration::from_secs(30),
        || async {
            let out =
                hostplane_e2e::kubectl(&["delete", "namespace", &ns, "--dry-run=server"]).await?;
            Ok(if out.success() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(out.stderr.trim().to_owned())
            })
        },
    )
    .await?;
    env.kubectl(&["delete", "tcp/d1", "--wait=true", "--timeout=50s"])
        .await?
        .ok()
        .context("deleting the confirmed tcp/d1")?;
    Ok(())
}

/// `etcdutl snapshot status <file> -w json` on the backup volume `claim`, in a pod of the etcd
/// image: the snapshot's revision, keys and size as etcd reads them, or None when the file is
/// not there (or not a snapshot).
async fn snapshot_status(
    env: &TestEnv,
    claim: &str,
    file: &str,
) -> Result<Option<serde_json::Value>> {
    let pod = format!("snapshot-check-{}", &hostplane_e2e::random_token()[..8]);
    let overrides = serde_json::json!({
        "spec": {
            "restartPolicy": "Never",
            // The namespace enforces the restricted Pod Security Standard; the snapshots are
            // the tenant pods' user's (65532).
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "check",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                "image": env.config.etcd_image,
                "imagePullPolicy": env.config.image_pull_policy,
                "command": ["etcdutl", "snapshot", "status", format!("/backups/{file}"), "-w", "json"],
                "volumeMounts": [{"name": "backups", "mountPath": "/backups", "readOnly": true}],
            }],
            "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": claim, "readOnly": true}}],
        },
    });
    env.kubectl(&[
        "run",
        &pod,
        "--restart=Never",
        &format!("--image={}", env.config.etcd_image),
        &format!("--overrides={overrides}"),
    ])
    .await?
    .ok()
    .context("starting the snapshot check pod")?;
    let phase = poll_until(
        &format!("pod {pod} (etcdutl snapshot status {file}) finished"),
        Duration::from_secs(90),
        || async {
            let out = env
                .kubectl(&["get", "pod", &pod, "-o", "jsonpath={.status.phase}"])
                .await?
                .ok()?;
            let phase = out.stdout.trim().to_owned();
            Ok(if phase == "Succeeded" || phase == "Failed" {
                Attempt::Done(phase)
            } else {
                Attempt::NotYet(format!("phase {phase:?}"))
            })
        },
    )
    .await?;
    let logs = env.kubectl(&["logs", &pod]).await?.ok()?.stdout;
    env.kubectl(&["delete", "pod", &pod, "--wait=false"])
        .await?
        .ok()?;
    if phase != "Succeeded" {
        println!("etcdutl snapshot status {file}: {}", logs.trim());
        return Ok(None);
    }
    let status: serde_json::Value = serde_json::from_str(logs.trim())
        .with_context(|| format!("etcdutl snapshot status printed {logs:?}"))?;
    Ok(Some(status))
}

/// `status.backup` of tcp/`name` as JSON (null when unset).
pub(super) async fn backup_status(env: &TestEnv, name: &str) -> Result<serde_json::Value> {
    let out = env
        .kubectl(&[
            "get",
            &format!("tcp/{name}"),
            "-o",
            "jsonpath={.status.backup}",
        ])
        .await?
        .ok()?;
    Ok(serde_json::from_str(out.stdout.trim()).unwrap_or(serde_json::Value::Null))
}

/// Waits until status.backup.lastSnapshot is newer than `after` (a snapshot name) and `field`
/// of status.backup is `value`; returns the new snapshot's name.
async fn wait_snapshot(
    env: &TestEnv,
    name: &str,
    after: &str,
    field: &str,
    value: &str,
) -> Result<String> {
    poll_until(
        &format!("tcp/{name} has a snapshot newer than {after:?} with {field}={value:?}"),
        Duration::from_secs(150),
        || async {
            let status = backup_status(env, name).await?;
            let snapshot = status["lastSnapshot"]["name"].as_str().unwrap_or_default();
            Ok(
                if snapshot > after && status[field].as_str() == Some(value) {
                    Attempt::Done(snapshot.to_owned())
                } else {
                    Attempt::NotYet(status.to_string())
                },
            )
        },
    )
    .await
}

/// Snapshots on demand (each new value of `hostplane.dev/backup-now` is one) and on a schedule
/// land on the tenant's backup volume as real etcd snapshots (etcdutl reads their revision and
/// keys), `status.backup` and the `BackupReady` condition name the last one, and only `retain`
/// of them are kept.
#[tokio::test]
async fn backups_on_demand_and_on_schedule_are_real_snapshots_and_only_retain_are_kept()
-> Result<()> {
    let _operator = OPERATOR.read().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-backup").await?;
    let tcp = Tcp::apply(&env, "b1").await?;
    tcp.wait_ready().await?;
    super::patch_spec(&env, "b1", r#"{"backup":{"retain":2}}"#).await?;
    let mut snapshots = Vec::new();
    let mut last = String::new();
    for request in ["one", "two", "three"] {
        env.kubectl(&[
            "annotate",
            "--overwrite",
            "tcp/b1",
            &format!("hostplane.dev/backup-now={request}"),
        ])
        .await?
        .ok()?;
        last = wait_snapshot(&env, "b1", &last, "lastRequest", request).await?;
        snapshots.push(last.clone());
    }
    let status = backup_status(&env, "b1").await?;
    ensure!(
        status["volumeClaimName"] == "b1-etcd-backups"
            && status["lastSnapshot"]["sizeBytes"]
                .as_u64()
                .is_some_and(|n| n > 0)
            && status["lastSnapshot"]["sha256"]
                .as_str()
                .is_some_and(|h| h.len() == 64),
        "status.backup is incomplete: {status}"
    );
    let condition = env
        .kubectl(&["get", "tcp/b1", "-o", "jsonpath={.status.conditions[?(@.type==\"BackupReady\")].status} {.status.conditions[?(@.type==\"BackupReady\")].message}"])
        .await?
        .ok()?
        .stdout;
    ensure!(
        condition.starts_with("True ") && condition.contains(&last),
        "BackupReady does not name the last snapshot {last}: {condition:?}"
    );
    // The two newest are real snapshots of a cluster with data; the oldest was pruned.
    for kept in &snapshots[1..] {
        let status = snapshot_status(&env, "b1-etcd-backups", kept)
            .await?
            .with_context(|| format!("snapshot {kept} is not readable on the volume"))?;
        ensure!(
            status["revision"].as_i64().is_some_and(|r| r > 1)
                && status["totalKey"].as_i64().is_some_and(|k| k > 10),
            "snapshot {kept} holds no cluster: {status}"
        );
    }
    ensure!(
        snapshot_status(&env, "b1-etcd-backups", &snapshots[0])
            .await?
            .is_none(),
        "the oldest snapshot {} is still there with retain 2",
        snapshots[0]
    );

    // Every minute: a scheduled one follows within a minute or so.
    super::patch_spec(&env, "b1", r#"{"backup":{"schedule":"* * * * *"}}"#).await?;
    poll_until(
        "tcp/b1 started a scheduled backup",
        Duration::from_secs(150),
        || async {
            let status = backup_status(&env, "b1").await?;
            let snapshot = status["lastSnapshot"]["name"].as_str().unwrap_or_default();
            Ok(
                if status["lastScheduled"].is_string() && snapshot > last.as_str() {
                    Attempt::Done(())
                } else {
                    Attempt::NotYet(status.to_string())
                },
            )
        },
    )
    .await?;
    super::backup_s3::snapshots_are_copied_to_the_store(&env, "b1", &last).await
}

/// `status.backup.restore` of tcp/`name`, once its step is `step` (or Failed when waiting for
/// another); the phases seen on the way are added to `phases`.
async fn wait_restore_step(
    env: &TestEnv,
    name: &str,
    step: &str,
    phases: &mut Vec<String>,
) -> Result<serde_json::Value> {
    let seen = std::sync::Mutex::new(Vec::new());
    let restore = poll_until(
        &format!("tcp/{name}'s restore reaches {step}"),
        Duration::from_secs(300),
        || async {
            let phase = env
                .kubectl(&[
                    "get",
                    &format!("tcp/{name}"),
                    "-o",
                    "jsonpath={.status.phase}",
                ])
                .await?
                .ok()?
                .stdout;
            if let Ok(mut seen) = seen.lock() {
                seen.push(phase.trim().to_owned());
            }
            let restore = backup_status(env, name).await?["restore"].clone();
            let now = restore["step"].as_str().unwrap_or_default().to_owned();
            Ok(if now == step || (now == "Failed" && step != "Failed") {
                Attempt::Done(restore)
            } else {
                Attempt::NotYet(restore.to_string())
            })
        },
    )
    .await?;
    phases.extend(seen.into_inner().unwrap_or_default());
    Ok(restore)
}

/// An in-place restore (`hostplane.dev/restore: <snapshot>`) stops the control plane, puts the
/// snapshot in place of etcd's data and starts it again: an object deleted after the snapshot is
/// back, one created after it is gone, the kubeconfig works. A restore of a snapshot that is not
/// there fails with a message listing the ones that are, and changes nothing.
#[tokio::test]
async fn an_in_place_restore_brings_back_the_snapshot_and_a_missing_one_changes_nothing()
-> Result<()> {
    let _operator = OPERATOR.read().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-restore").await?;
    let tcp = Tcp::apply(&env, "r1").await?;
    tcp.wait_ready().await?;
    super::patch_spec(&env, "r1", r#"{"backup":{"retain":3}}"#).await?;
    let kubeconfig = tcp.kubeconfig().await?;
    let config_maps = Api::<ConfigMap>::namespaced(tenant_client(&kubeconfig).await?, "default");
    let make = |name: &str| -> Result<ConfigMap> {
        Ok(serde_json::from_value(
            serde_json::json!({"metadata": {"name": name}}),
        )?)
    };
    config_maps
        .create(&PostParams::default(), &make("kept")?)
        .await
        .context("creating kept")?;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "kept"}, "stringData": {"v": "in the snapshot"}}),
    )?;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        tenant_client(&kubeconfig).await?,
        "default",
    )
    .create(&PostParams::default(), &secret)
    .await
    .context("creating Secret kept")?;
    env.kubectl(&["annotate", "tcp/r1", "hostplane.dev/backup-now=before"])
        .await?
        .ok()?;
    let snapshot = wait_snapshot(&env, "r1", "", "lastRequest", "before").await?;
    config_maps
        .delete("kept", &kube::api::DeleteParams::default())
        .await
        .context("deleting kept")?;
    config_maps
        .create(&PostParams::default(), &make("later")?)
        .await
        .context("creating later")?;

    env.kubectl(&[
        "annotate",
        "tcp/r1",
        &format!("hostplane.dev/restore={snapshot}"),
    ])
    .await?
    .ok()?;
    let mut phases = Vec::new();
    let restore = wait_restore_step(&env, "r1", "Succeeded", &mut phases).await?;
    ensure!(
        restore["step"] == "Succeeded" && restore["snapshot"] == snapshot.as_str(),
        "the restore did not succeed: {restore}"
    );
    ensure!(
        phases.iter().any(|p| p == "Restoring"),
        "the phase never showed Restoring: {phases:?}"
    );
    tcp.wait_ready().await?;
    let config_maps = Api::<ConfigMap>::namespaced(tenant_client(&kubeconfig).await?, "default");
    ensure!(
        config_maps.get_opt("kept").await?.is_some(),
        "the ConfigMap deleted after the snapshot is not back"
    );
    ensure!(
        config_maps.get_opt("later").await?.is_none(),
        "the ConfigMap created after the snapshot survived the restore"
    );
    let events = env
        .kubectl(&[
            "get",
            "events",
            "-o",
            "jsonpath={range .items[*]}{.reason} {end}",
        ])
        .await?
        .ok()?
        .stdout;
    for reason in ["RestoreRunning", "RestoreStarting", "Restored"] {
        ensure!(events.contains(reason), "no {reason} Event: {events}");
    }

    assert_missing_snapshot_is_refused(&env, &tcp, &kubeconfig, &snapshot).await?;
    assert_new_tenant_from_snapshot(&env, "r1", &snapshot).await
}

/// A restore of a snapshot that is not on the volume: refused by the Job's check with the list
/// of those that are; nothing replaced, the tenant Ready again with its data.
async fn assert_missing_snapshot_is_refused(
    env: &TestEnv,
    tcp: &Tcp<'_>,
    kubeconfig: &str,
    snapshot: &str,
) -> Result<()> {
    // A snapshot that is not on the volume: refused by the Job's check, nothing replaced.
    env.kubectl(&[
        "annotate",
        "--overwrite",
        "tcp/r1",
        "hostplane.dev/restore=r1-19990101-000000.db",
    ])
    .await?
    .ok()?;
    let restore = wait_restore_step(env, "r1", "Failed", &mut Vec::new()).await?;
    let message = restore["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("there is no snapshot r1-19990101-000000.db")
            && message.contains(snapshot),
        "the failed restore does not say what is there: {message:?}"
    );
    tcp.wait_ready().await?;
    let config_maps = Api::<ConfigMap>::namespaced(tenant_client(kubeconfig).await?, "default");
    ensure!(
        config_maps.get_opt("kept").await?.is_some(),
        "a refused restore changed the tenant's data"
    );
    Ok(())
}

/// A new TenantControlPlane with `etcd.managed.restoreFrom` the snapshot of `source` starts with
/// its objects, Secrets included (readable: the source's encryption key came with them).
async fn assert_new_tenant_from_snapshot(
    env: &TestEnv,
    source: &str,
    snapshot: &str,
) -> Result<()> {
    let version = env.config.kubernetes_version.trim_start_matches('v');
    let manifest = format!(
        "apiVersion: hostplane.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: r2\nspec:\n  version: \"{version}\"\n{SMALL}  etcd:\n    managed:\n      restoreFrom: {{tenant: {source}, snapshot: {snapshot}}}\n"
    );
    let path = std::env::temp_dir().join(format!("tcp-{}.yaml", hostplane_e2e::random_token()));
    std::fs::write(&path, manifest).context("writing the manifest")?;
    let applied = env.kubectl(&["apply", "-f", &path.to_string_lossy()]).await;
    let _ = std::fs::remove_file(&path);
    applied?.ok().context("applying tcp/r2")?;
    let restore = wait_restore_step(env, "r2", "Succeeded", &mut Vec::new()).await?;
    ensure!(
        restore["step"] == "Succeeded" && restore["source"] == source,
        "tcp/r2 was not created from {source}'s snapshot: {restore}"
    );
    let r2 = Tcp {
        env,
        name: "r2".to_owned(),
    };
    r2.wait_ready().await?;
    let client = tenant_client(&r2.kubeconfig().await?).await?;
    ensure!(
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .get_opt("kept")
            .await?
            .is_some(),
        "tcp/r2 does not hold the ConfigMap of {source}'s snapshot"
    );
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, "default")
        .get("kept")
        .await
        .context(
            "reading the snapshot's Secret in tcp/r2 (its encryption key must be the source's)",
        )?;
    ensure!(
        secret
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .map(|v| v.0.as_slice())
            == Some(b"in the snapshot".as_slice()),
        "tcp/r2's copy of the Secret differs: {:?}",
        secret.data
    );
    Ok(())
}

/// Deletion never waits on the tenant (issue 11): a TenantControlPlane whose API server cannot
/// start and whose etcd was deleted is removed with everything it made; a namespace being
/// deleted with a working tenant in it goes away. The operator holds no finalizer, so only the
/// garbage collector and the namespace controller are involved, but the operator keeps
/// reconciling the tenant while it goes: this checks it does not bring back what is deleted.
#[tokio::test]
async fn a_broken_tenant_and_a_namespace_being_deleted_are_removed_completely() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("tcp-broken-delete").await?;
    let ns_env = TestEnv::new("tcp-ns-delete").await?;
    let broken = Tcp::apply(&env, "x1").await?;
    let doomed = Tcp::apply(&ns_env, "x2").await?;
    broken.wait_ready().await?;
    break_tenant(&env, &broken).await?;
    env.kubectl(&["annotate", "tcp/x1", &format!("{CONFIRM_DELETION}=true")])
        .await?
        .ok()?;
    env.kubectl(&["delete", "tcp/x1", "--wait=true", "--timeout=60s"])
        .await?
        .ok()
        .context("deleting the broken tcp/x1")?;
    super::nothing_left(&env, "x1").await?;
    // Nothing comes back while the operator looks again (its next pass after the delete).
    tokio::time::sleep(Duration::from_secs(10)).await; // a window to observe, not an assertion of speed
    let left = super::left_of(&env, "x1").await?;
    ensure!(
        left.is_empty(),
        "objects of the deleted tcp/x1 came back: {left:?}"
    );
    delete_namespace_with_its_tenant(&ns_env, &doomed).await
}

/// Deletes the namespace of `env` while `tcp` runs there (confirmed) and waits until it is gone.
async fn delete_namespace_with_its_tenant(env: &TestEnv, tcp: &Tcp<'_>) -> Result<()> {
    // A namespace deleted while its tenant provisions or runs.
    let ns = env.namespace().to_owned();
    env.kubectl(&[
        "annotate",
        &format!("tcp/{}", tcp.name),
        &format!("{CONFIRM_DELETION}=true"),
    ])
    .await?
    .ok()?;
    poll_until(
        &format!("namespace {ns} is being deleted"),
        Duration::from_secs(30),
        || async {
            let out = hostplane_e2e::kubectl(&["delete", "namespace", &ns, "--wait=false"]).await?;
            Ok(if out.success() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(out.stderr.trim().to_owned()) // the policy's cache, see above
            })
        },
    )
    .await?;
    poll_until(
        &format!("namespace {ns} is gone"),
        Duration::from_secs(240),
        || async {
            let out = hostplane_e2e::kubectl(&["get", "namespace", &ns, "-o", "name"]).await?;
            Ok(if !out.success() && out.stderr.contains("NotFound") {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("still there: {}", out.stdout.trim()))
            })
        },
    )
    .await
}

/// Breaks tcp/x1 three ways: its etcd CA lost (the operator stops at it, RootsUnavailable, and
/// repairs nothing), its etcd deleted with its data, its API server restarted with no etcd to
/// talk to (never ready again).
async fn break_tenant(env: &TestEnv, broken: &Tcp<'_>) -> Result<()> {
    env.kubectl(&["delete", "secret", "x1-etcd-ca"])
        .await?
        .ok()?;
    broken.touch("broken").await?;
    poll_until(
        "tcp/x1 reports its lost etcd CA",
        Duration::from_secs(120),
        || async {
            let (reason, message) = broken.ready_condition().await?;
            Ok(if reason == "RootsUnavailable" {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("Ready: {reason}: {message}"))
            })
        },
    )
    .await?;
    env.kubectl(&["delete", "statefulset", "x1-etcd", "--wait=false"])
        .await?
        .ok()?;
    env.kubectl(&[
        "delete",
        "pvc",
        "-l",
        "hostplane.dev/tenant=x1",
        "--wait=false",
    ])
    .await?
    .ok()?;
    env.kubectl(&[
        "delete",
        "pod",
        "-l",
        "hostplane.dev/tenant=x1",
        "--wait=false",
    ])
    .await?
    .ok()?;
    let apiserver_pods = "app.kubernetes.io/component=kube-apiserver,hostplane.dev/tenant=x1";
    poll_until(
        "no API server pod of tcp/x1 is ready and its etcd pod is gone",
        Duration::from_secs(120),
        || async {
            let ready = env
                .kubectl(&[
                    "get",
                    "pods",
                    "-l",
                    apiserver_pods,
                    "-o",
                    "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .await?
                .ok()?
                .stdout;
            let etcd = env
                .kubectl(&[
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/component=etcd,hostplane.dev/tenant=x1",
                    "-o",
                    "name",
                ])
                .await?
                .ok()?
                .stdout;
            Ok(if !ready.contains("True") && etcd.trim().is_empty() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!(
                    "API server Ready {ready:?}, etcd pods {:?}",
                    etcd.trim()
                ))
            })
        },
    )
    .await?;
    Ok(())
}
