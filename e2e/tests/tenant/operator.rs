//! Tests of the operator itself: leader election and its rights (helpers in common/operator.rs).

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{Attempt, kubectl, poll_until};

use super::operator::{LEASE, NAMESPACE, Replica, kill_process, leader, replicas, scale};

/// Three replicas: two stand by (healthy, not ready) while one holds the Lease. (1) The leader
/// deleted (it releases the Lease on SIGTERM): exactly one standby takes over, none loses the Lease
/// again (two standbys race for a released Lease). (2) The new leader's process killed with
/// SIGKILL and its pod force-deleted (no release): another replica takes over once the term ends
/// and finishes a TCP created after the kill. (3) Someone else takes the Lease: the leader stops at
/// once. Back to one replica at the end.
#[tokio::test]
async fn a_standby_operator_takes_over_when_the_leader_dies() -> Result<()> {
    if !super::env_flag("E2E_LOCAL_SEED") {
        return hostplane_e2e::skip(
            "a_standby_operator_takes_over_when_the_leader_dies",
            "kills the operator's process on the seed's host, which only the local seed allows (E2E_LOCAL_SEED=1)",
        );
    }
    let _operator = super::OPERATOR.write().await;
    let env = hostplane_e2e::TestEnv::new("tcp-leader").await?;
    scale(3).await?;
    let result = async {
        let first = leader(&[], Duration::from_secs(60)).await?;
        let standby = standbys(&first, 2).await?;
        // A standby is alive but not ready: it reconciles nothing.
        let http = hostplane_e2e::http_client()?;
        let health = http.get(standby.url("/healthz")).send().await?.status();
        let ready = http.get(standby.url("/readyz")).send().await?.status();
        ensure!(
            health.is_success() && ready == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "the standby answered /healthz {health} and /readyz {ready}; want 200 and 503"
        );

        // (1) A graceful handover to exactly one of two standbys.
        kubectl(&["-n", NAMESPACE, "delete", "pod", &first.name])
            .await?
            .ok()?;
        let second = leader(std::slice::from_ref(&first.name), Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(10)).await; // a window for a second leader, not an assertion
        let mut leaders = Vec::new();
        for r in replicas().await? {
            let log = r.log(false).await?;
            ensure!(
                r.restarts == 0 && !log.contains("lost the Lease"),
                "{} lost the Lease after {} released it (two replicas took it)",
                r.name,
                first.name
            );
            if log.contains(r#""message":"leading""#) {
                leaders.push(r.name);
            }
        }
        ensure!(
            leaders == [second.name.clone()],
            "after the handover {leaders:?} logged that they lead; want only {}",
            second.name
        );

        // (2) SIGKILL: no release; the term runs out first.
        kill_process(&second)?;
        kubectl(&[
            "-n",
            NAMESPACE,
            "delete",
            "pod",
            &second.name,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ])
        .await?
        .ok()?;
        let tcp = super::Tcp::apply(&env, "l1").await?;
        tcp.wait_ready().await?;
        let third = leader(&[first.name, second.name], Duration::from_secs(60)).await?;
        // (3)
        assert_losing_the_lease_stops(&third).await
    }
    .await;
    let restored = async {
        scale(1).await?;
        leader(&[], Duration::from_secs(90)).await
    }
    .await;
    result?;
    restored?;
    Ok(())
}

/// Waits until `n` replicas other than `leader` say they stand by; returns one of them.
async fn standbys(leader: &Replica, n: usize) -> Result<Replica> {
    poll_until(
        &format!("{n} replicas stand by"),
        Duration::from_secs(60),
        || async {
            let mut found = Vec::new();
            for r in replicas().await? {
                if r.name != leader.name && r.log(false).await?.contains("standing by") {
                    found.push(r);
                }
            }
            Ok(if found.len() >= n {
                Attempt::Done(found.swap_remove(0))
            } else {
                Attempt::NotYet(format!("{} replicas logged `standing by`", found.len()))
            })
        },
    )
    .await
}

/// Someone else takes the Lease: the leading `replica` stops at once (its container exits, to come
/// back as a standby) rather than reconcile beside another leader.
async fn assert_losing_the_lease_stops(replica: &Replica) -> Result<()> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .context("a time")?
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting a time")?
        .replace('Z', ".000000Z");
    let steal = format!(r#"{{"spec":{{"holderIdentity":"e2e-thief","renewTime":"{now}"}}}}"#);
    kubectl(&[
        "-n", NAMESPACE, "patch", "lease", LEASE, "--type", "merge", "-p", &steal,
    ])
    .await?
    .ok()
    .context("taking the Lease")?;
    poll_until(
        "the leader that lost its Lease exits",
        Duration::from_secs(60),
        || async {
            let now = replicas()
                .await?
                .into_iter()
                .find(|r| r.name == replica.name);
            let Some(now) = now.filter(|r| r.restarts > replica.restarts) else {
                return Ok(Attempt::NotYet(format!(
                    "{} has not restarted",
                    replica.name
                )));
            };
            Ok(if now.log(true).await?.contains("lost the Lease") {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!(
                    "{} restarted, but its previous log has no `lost the Lease`",
                    replica.name
                ))
            })
        },
    )
    .await
}

const SERVICE_ACCOUNT: &str = "system:serviceaccount:hostplane-system:hostplane-operator";

/// `kubectl auth can-i --list` of the operator's ServiceAccount, in its own namespace and in a
/// tenant's, is exactly the checked-in expectation; and what it must never do, it cannot.
#[tokio::test]
async fn the_operator_has_exactly_the_rights_it_needs() -> Result<()> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/expect");
    for (ns, file) in [
        (NAMESPACE, "operator-rights-own-namespace.txt"),
        ("default", "operator-rights-other-namespace.txt"),
    ] {
        let out = kubectl(&["auth", "can-i", "--list", "--as", SERVICE_ACCOUNT, "-n", ns])
            .await?
            .ok()?
            .stdout;
        let got = normalize_rights(&out);
        let path = format!("{dir}/{file}");
        let want = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        ensure!(
            got == normalize_rights(&want),
            "the operator's rights in namespace {ns} differ from {path}; if intended, write this \
             there:\n{got}"
        );
    }
    let forbidden: &[&[&str]] = &[
        &["delete", "nodes"],
        &["patch", "nodes"],
        &["impersonate", "users"],
        &["impersonate", "groups"],
        &["impersonate", "serviceaccounts"],
        &["escalate", "clusterroles"],
        &["bind", "clusterroles"],
        &["create", "clusterroles"],
        &["create", "clusterrolebindings"],
        &["create", "rolebindings", "-n", "default"],
        &["create", "customresourcedefinitions"],
        &["create", "namespaces"],
        &["create", "mutatingwebhookconfigurations"],
        // GitOps deletes Secrets, Services, Deployments and NetworkPolicies it wrote (an agent
        // switched off, a registration removed); never a tenant's data.
        &["delete", "persistentvolumeclaims", "-n", "default"],
        &["delete", "statefulsets", "-n", "default"],
        &["create", "pods", "-n", "default"],
        &["create", "pods/exec", "-n", "default"],
        &["create", "serviceaccounts/token", "-n", "default"],
        &[
            "patch",
            "tenantcontrolplanes.hostplane.dev",
            "-n",
            "default",
        ],
        &[
            "delete",
            "tenantcontrolplanes.hostplane.dev",
            "-n",
            "default",
        ],
        &[
            "patch",
            "leases/kube-controller-manager",
            "-n",
            "kube-system",
        ],
        &["patch", "leases/someone-else", "-n", NAMESPACE],
        &["*", "*"],
    ];
    for action in forbidden {
        let mut args = vec!["auth", "can-i"];
        args.extend_from_slice(action);
        args.extend_from_slice(&["--as", SERVICE_ACCOUNT]);
        let out = kubectl(&args).await?;
        ensure!(
            out.stdout.trim() == "no",
            "the operator can `{}` (kubectl auth can-i answered {:?}, {})",
            action.join(" "),
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(())
}

/// can-i's table without its column padding, rows sorted.
fn normalize_rights(table: &str) -> String {
    let mut rows: Vec<String> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    rows.sort();
    rows.join("\n")
}
