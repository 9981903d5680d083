//! Day 2 (issue 8): graceful rotation of the service-account signing key, driven by the
//! annotations, checked against the real API servers: a token of the old key works until the
//! rotation completes and is refused after; the pod on the worker (upgrade.rs) gets a token of the
//! new key from its kubelet before the old key goes, and none of its calls fails.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use hostplane_e2e::{Attempt, TestEnv, poll_until};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams};

use super::{annotate, kubectl_as};

const ROTATE: &str = "hostplane.dev/rotate-service-account-key";
const COMPLETE: &str = "hostplane.dev/complete-service-account-key-rotation";
/// Two API server rollouts (trust the new key, then sign with it) on a busy 2-core machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// `status.serviceAccountKey` of a TCP, as read by kubectl.
#[derive(Debug, PartialEq, Eq)]
struct Keys {
    signing: String,
    accepted: Vec<String>,
    phase: String,
}

async fn keys(env: &TestEnv, tcp: &str) -> Result<Keys> {
    let path = "{.status.serviceAccountKey.signingKeyId}|\
                {.status.serviceAccountKey.acceptedKeyIds[*]}|\
                {.status.serviceAccountKey.rotation.phase}";
    let out = env
        .kubectl(&[
            "get",
            &format!("tcp/{tcp}"),
            "-o",
            &format!("jsonpath={path}"),
        ])
        .await?
        .ok()?;
    let mut parts = out.stdout.trim().splitn(3, '|');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    Ok(Keys {
        signing: next(),
        accepted: next().split_whitespace().map(str::to_owned).collect(),
        phase: next(),
    })
}

/// Polls `status.serviceAccountKey` until `done` says it is there.
async fn wait_keys(
    env: &TestEnv,
    tcp: &str,
    what: &str,
    done: impl Fn(&Keys) -> bool,
) -> Result<Keys> {
    poll_until(&format!("tcp/{tcp}: {what}"), STEP_TIMEOUT, || async {
        let k = keys(env, tcp).await?;
        Ok(if done(&k) {
            Attempt::Done(k)
        } else {
            Attempt::NotYet(format!("{k:?}"))
        })
    })
    .await
}

/// The JSON of part `i` of a JWT (0: header, 1: claims).
fn jwt_part(token: &str, i: usize) -> Result<serde_json::Value> {
    let part = token.split('.').nth(i).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// A client of the tenant that authenticates with `token` only (no client certificate).
async fn token_client(admin_yaml: &str, token: &str) -> Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(admin_yaml)?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_owned().into()),
        ..kube::config::AuthInfo::default()
    };
    Ok(Client::try_from(config)?)
}

/// What the tenant says to a read of ConfigMaps in `default` with the token: Ok, or the error.
async fn read_with(client: &Client) -> Result<(), kube::Error> {
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .list(&ListParams::default().limit(1))
        .await
        .map(|_| ())
}

/// The whole rotation of tcp/`tcp` while the poller pod (its token projected with a 10-minute
/// lifetime, so its kubelet replaces it after eight) calls the tenant: the old key's token is
/// taken first; after the switch the test waits for the pod's token of the new key, confirms
/// the rotation, and the old token is refused.
pub async fn rotate_under_a_pod(
    env: &TestEnv,
    tcp: &str,
    admin: &str,
    admin_yaml: &str,
) -> Result<()> {
    let before = wait_keys(env, tcp, "one signing key", |k| !k.signing.is_empty()).await?;
    ensure!(
        before.accepted == [before.signing.clone()],
        "before a rotation only the signing key is trusted: {before:?}"
    );
    // A token of the old key, asked for two days: the API servers cap tokens at one (that cap is
    // how long a rotated-out key stays trusted).
    let out = kubectl_as(admin, &["create", "token", "default", "--duration=48h"])
        .await?
        .ok()?;
    let old_token = out.stdout.trim().to_owned();
    let header = jwt_part(&old_token, 0)?;
    ensure!(
        header["kid"] == before.signing.as_str(),
        "the token's kid {} is not status.serviceAccountKey.signingKeyId {}",
        header["kid"],
        before.signing
    );
    let claims = jwt_part(&old_token, 1)?;
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    ensure!(
        lifetime == 86_400,
        "a 48h token lives {lifetime} s, not a day"
    );
    let old_client = token_client(admin_yaml, &old_token).await?;
    read_with(&old_client)
        .await
        .context("the old key's token, before")?;

    annotate(env, tcp, ROTATE, "e2e-1").await?;
    let rotating = wait_keys(env, tcp, "the new key signs (Rotating)", |k| {
        k.phase == "Rotating"
    })
    .await?;
    ensure!(
        rotating.signing != before.signing
            && rotating.accepted == [rotating.signing.clone(), before.signing.clone()],
        "Rotating: the new key signs and both are trusted: {rotating:?}"
    );
    read_with(&old_client)
        .await
        .context("the old key's token, while Rotating")?;
    // The kubelet replaces the pod's token (8 of its 10 minutes) with one of the new key.
    let wanted = format!(" token kid={} ", rotating.signing);
    poll_until(
        "the poller pod sends a token of the new key",
        // Eight minutes after it was issued, or sixteen if the kubelet replaced it just before the
        // switch (with a token of the old key).
        Duration::from_secs(960),
        || async {
            let logs = match kubectl_as(admin, &["logs", "poller"]).await?.ok() {
                Ok(logs) => logs,
                // The API servers roll during the rotation: a refused read is tried again.
                Err(e) => return Ok(Attempt::NotYet(format!("kubectl logs: {e:#}"))),
            };
            Ok(if logs.stdout.contains(&wanted) {
                Attempt::Done(())
            } else {
                let tokens: Vec<&str> = logs
                    .stdout
                    .lines()
                    .filter(|l| l.contains(" token "))
                    .collect();
                Attempt::NotYet(format!("{tokens:?}"))
            })
        },
    )
    .await?;
    annotate(env, tcp, COMPLETE, "e2e-1").await?;
    let done = wait_keys(env, tcp, "the rotation completed", |k| {
        k.phase == "Completed"
    })
    .await?;
    ensure!(
        done.accepted == [rotating.signing.clone()] && done.signing == rotating.signing,
        "Completed: only the new key is trusted: {done:?}"
    );
    match read_with(&old_client).await {
        Err(kube::Error::Api(e)) if e.code == 401 => {}
        other => anyhow::bail!("the old key's token after the rotation: {other:?}, not 401"),
    }
    let events = super::event_messages(
        env,
        &format!("involvedObject.name={tcp},reason=ServiceAccountKeyRotation"),
    )
    .await?;
    for step in ["step 1 of 3", "step 2 of 3", "step 3 of 3"] {
        ensure!(events.contains(step), "no Event of {step}: {events}");
    }
    Ok(())
}

/// A rotation whose operator stops while the API servers roll onto the new key goes on from
/// where it was once an operator runs again: the key that signs at the end is the one that was
/// trusted when the operator stopped (a restart that began anew would sign with another).
pub async fn resumes_after_the_operator_stops(env: &TestEnv, tcp: &str) -> Result<()> {
    let before = wait_keys(env, tcp, "one signing key", |k| !k.signing.is_empty()).await?;
    annotate(env, tcp, ROTATE, "resume-1").await?;
    let started = wait_keys(env, tcp, "the rotation started", |k| {
        k.phase == "Preparing" || k.phase == "Rotating"
    })
    .await?;
    super::operator::scale(0).await?;
    // Meanwhile the API servers' rollout finishes with no operator to see it: the next one
    // must take it from the Deployment's status.
    tokio::time::sleep(Duration::from_secs(45)).await;
    super::operator::scale(1).await?;
    eprintln!("sa-key e2e: the operator stopped with the rotation {started:?}");
    // Confirmed at once: the old key still goes only after the switch's rollout is over.
    annotate(env, tcp, COMPLETE, "resume-1").await?;
    let done = wait_keys(env, tcp, "the rotation completed", |k| {
        k.phase == "Completed"
    })
    .await?;
    let new_key: Vec<&String> = started
        .accepted
        .iter()
        .filter(|k| **k != before.signing)
        .collect();
    ensure!(
        new_key == [&done.signing] && done.accepted == [done.signing.clone()],
        "the rotation went on with the key trusted when the operator stopped \
         ({started:?}), and only it is trusted now: {done:?}"
    );
    Ok(())
}
