//! Leader election through a coordination Lease (kube-lease-manager), so that replicas of the
//! operator are safe: only the holder of the Lease reconciles, a standby waits, and a leader that
//! loses the Lease stops at once (the process exits and is restarted as a standby).

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use thiserror::Error;
use tokio::sync::watch;
use tracing::info;

/// Lease duration: how long a leader that vanished without releasing keeps the Lease.
const LEASE_SECONDS: u64 = 15;
/// How long before the end of its term a leader renews.
const GRACE_SECONDS: u64 = 5;

#[derive(Debug, Error)]
pub enum LeaderError {
    #[error("Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("the leader election task stopped")]
    Stopped,
}

/// Where the Lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
}

/// Holds leadership once acquired; dropping it releases the Lease (handled by the manager task).
pub struct Leadership {
    channel: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Resolves when this replica is no longer the leader.
    pub async fn lost(&mut self) {
        while *self.channel.borrow_and_update() {
            if self.channel.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease up (so a standby takes over at once) and waits until it is released.
    pub async fn release(self) {
        let Self { channel, task } = self;
        drop(channel);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

/// The field manager of this replica's writes to the Lease (at most 128 bytes, as the API allows).
fn field_manager(identity: &str) -> String {
    let mut manager = format!("hostplane-operator-{identity}");
    if manager.len() > 128 {
        let mut end = 128;
        while !manager.is_char_boundary(end) {
            end -= 1;
        }
        manager.truncate(end);
    }
    manager
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, election: &Election) -> Result<Leadership, LeaderError> {
    let manager = LeaseManagerBuilder::new(client, &election.name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        // One field manager per replica: taking a Lease is a server-side apply of holderIdentity,
        // and only distinct managers make a second replica's apply a conflict. With one shared
        // manager, two standbys both "took" a just-released Lease (e2e run, 2026-11-23: two
        // leaders for 10 s).
        .with_field_manager(field_manager(&election.identity))
        .build()
        .await
        .map_err(|source| LeaderError::Lease {
            namespace: election.namespace.clone(),
            name: election.name.clone(),
            source,
        })?;
    let (mut channel, task) = manager.watch().await;
    let mut said = false;
    while !*channel.borrow_and_update() {
        // A free Lease is taken within a moment; only a held one makes this replica wait.
        match tokio::time::timeout(Duration::from_secs(2), channel.changed()).await {
            Ok(changed) => changed.map_err(|_| LeaderError::Stopped)?,
            Err(_) if !said => {
                info!(identity = %election.identity, lease = %election.name, "standing by: another replica holds the Lease");
                said = true;
            }
            Err(_) => {}
        }
    }
    info!(identity = %election.identity, lease = %election.name, "leading");
    Ok(Leadership { channel, task })
}

#[cfg(test)]
mod tests {
    use super::field_manager;

    #[test]
    fn each_replica_writes_the_lease_as_its_own_field_manager() {
        let a = field_manager("hostplane-operator-5f985bdf78-85xk5");
        let b = field_manager("hostplane-operator-5f985bdf78-fvl2f");
        assert_ne!(a, b);
        assert_eq!(a, "hostplane-operator-hostplane-operator-5f985bdf78-85xk5");
        let long = field_manager(&"é".repeat(100));
        assert!(long.len() <= 128 && long.starts_with("hostplane-operator-é"));
    }
}
