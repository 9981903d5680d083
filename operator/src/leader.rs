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

/// Waits until this replica holds the Lease.
pub async fn acquire(client: Client, election: &Election) -> Result<Leadership, LeaderError> {
    let manager = LeaseManagerBuilder::new(client, &election.name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager("hostplane")
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
