//! Day 2 (issue 9): hibernation and deletion protection.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{Attempt, CONFIRM_DELETION, TestEnv, install_crds, poll_until};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use super::{OPERATOR, Tcp, tenant_client};

/// How long a hibernating tenant may take to stop its pods (their grace periods included).
const SLEEP_TIMEOUT: Duration = Duration::from_secs(180);

/// Sets `spec.hibernation` of tcp/`name` to the JSON `value`.
async fn hibernation(env: &TestEnv, name: &str, value: &str) -> Result<()> {
    env.kubectl(&[
        "patch",
        &format!("tcp/{name}"),
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"hibernation":{value}}}}}"#),
    ])
    .await?
    .ok()
    .with_context(|| format!("setting spec.hibernation of tcp/{name} to {value}"))?;
    Ok(())
}

/// Waits for phase Hibernated, Ready False with reason Hibernated, and no pod of the tenant.
async fn wait_hibernated(env: &TestEnv, name: &str) -> Result<()> {
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
