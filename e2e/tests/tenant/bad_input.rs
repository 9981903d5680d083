//! Objects that pass the CRD but cannot work (issue 11): each ends in a condition with a reason and
//! a message that says what to do, the operator does not spin on it, and fixing the spec brings
//! the tenant up. (Lost and accepted roots: tenant.rs; garbage in the spec: the property tests.)

use std::time::Duration;

use anyhow::{Result, ensure};
use hostplane_e2e::{Attempt, TestEnv, install_crds, poll_until};

use super::Tcp;

/// Waits until condition `type_` of `tcp` is False with `reason`; returns its message.
async fn condition_says(tcp: &Tcp<'_>, type_: &str, reason: &str) -> Result<String> {
    poll_until(
        &format!("tcp/{} says {type_} False, {reason}", tcp.name),
        Duration::from_secs(180),
        || async {
            let (_, got, message) = tcp.condition(type_).await?;
            Ok(if got == reason {
                Attempt::Done(message)
            } else {
                Attempt::NotYet(format!("{type_}: {got}: {message}"))
            })
        },
    )
    .await
}

#[tokio::test]
async fn a_tenant_that_cannot_work_says_why_waits_quietly_and_recovers_when_fixed() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("tcp-bad-input").await?;
    // An image nobody can pull, a StorageClass that does not exist.
    let image = Tcp::apply_with(&env, "img", "  registry: registry.hostplane.invalid\n").await?;
    let volume = Tcp::apply_with(
        &env,
        "vol",
        "  etcd:\n    managed:\n      storage:\n        storageClassName: no-such-class\n",
    )
    .await?;
    let message = condition_says(&image, "EtcdReady", "ImagePullFailed").await?;
    ensure!(
        message.contains("registry.hostplane.invalid/etcd:") && message.contains("spec.registry"),
        "the image problem names neither the image nor what to check: {message}"
    );
    let message = condition_says(&volume, "EtcdReady", "VolumePending").await?;
    ensure!(
        message.contains("data-vol-etcd-0") && message.contains("no-such-class"),
        "the volume problem names neither the claim nor its class: {message}"
    );
    // Quiet while it waits: no status write (so no reconcile that changes anything) for 20 s.
    tokio::time::sleep(Duration::from_secs(10)).await; // let the last writes land, then watch
    let before = (
        image.resource_version().await?,
        volume.resource_version().await?,
    );
    tokio::time::sleep(Duration::from_secs(20)).await; // a window for a hot loop, not a speed check
    let after = (
        image.resource_version().await?,
        volume.resource_version().await?,
    );
    ensure!(
        before == after,
        "a tenant that cannot work was written again and again: {before:?} -> {after:?}"
    );
    // Fixed: the right registry, and the tenant comes up on the etcd pod it had.
    super::patch_spec(&env, "img", r#"{"registry":null}"#).await?;
    image.wait_ready().await
}
