//! Pure rollout order and workload state: etcd first, the API server once etcd has quorum, the
//! controller-manager and scheduler once the API server's rollout is over (one available, none of
//! an older spec left: an upgrade moves the API server first). A component started before
//! the one it needs only crash-loops (and then waits out its back-off), so each waits for the one
//! before it; what is already running is never removed, its update only waits.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

/// What the status shows for one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadState {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Whether a majority of etcd's members are ready: enough for the API server to start. A status
/// not yet about the latest spec (just changed, its members about to restart) does not count.
pub fn etcd_has_quorum(etcd: &StatefulSet) -> bool {
    let observed = etcd.status.as_ref().and_then(|s| s.observed_generation);
    let (ready, want) = members(etcd);
    is_current(etcd.metadata.generation, observed) && ready > want / 2 // 1 of 1, 2 of 3
}

/// Whether at least one replica of a Deployment is available, by a status about its latest spec:
/// enough for its clients to start.
pub fn serves(deployment: &Deployment) -> bool {
    let status = deployment.status.as_ref();
    is_current(
        deployment.metadata.generation,
        status.and_then(|s| s.observed_generation),
    ) && status.and_then(|s| s.available_replicas).unwrap_or(0) >= 1
}

/// When a Deployment's last rollout was over (its `Progressing` condition turned
/// `NewReplicaSetAvailable`), if it is. Pods of the older template may still be stopping for
/// their grace period after that.
pub fn rollout_finished_at(deployment: &Deployment) -> Option<time::OffsetDateTime> {
    if !rolled_out(deployment) {
        return None;
    }
    let condition = deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        })?;
    let at = condition.last_update_time.as_ref()?.0.as_second();
    time::OffsetDateTime::from_unix_timestamp(at).ok()
}

/// Since when every API server runs the current template and the pods of an older one have
/// stopped: the rollout is over and their grace period has passed (no watch event tells when).
pub fn api_servers_settled_at(apiserver: &Deployment) -> Option<time::OffsetDateTime> {
    rollout_finished_at(apiserver)
        .map(|t| t + time::Duration::seconds(crate::build::apiserver::TERMINATION_GRACE_SECONDS))
}

/// Since when every control-plane workload — etcd, the API servers, the controller-manager and
/// the scheduler — runs its current template and the pods of an older one have stopped, if they
/// do: what a CA rotation waits for before each step. etcd tells no time: it must be rolled out
/// when this is asked.
pub fn control_plane_settled_at(
    etcd: &StatefulSet,
    apiserver: &Deployment,
    controllers: &[Deployment],
) -> Option<time::OffsetDateTime> {
    if !etcd_rolled_out(etcd) {
        return None;
    }
    let mut at = api_servers_settled_at(apiserver)?;
    for deployment in controllers {
        let finished = rollout_finished_at(deployment)?;
        at = at.max(finished + time::Duration::seconds(CONTROLLER_GRACE_SECONDS));
    }
    Some(at)
}

/// The grace period of a controller-manager or scheduler pod (Kubernetes' default).
const CONTROLLER_GRACE_SECONDS: i64 = 30;

/// Whether every etcd member runs the StatefulSet's current revision and is ready.
pub fn etcd_rolled_out(etcd: &StatefulSet) -> bool {
    let Some(status) = etcd.status.as_ref() else {
        return false;
    };
    let (ready, want) = members(etcd);
    is_current(etcd.metadata.generation, status.observed_generation)
        && status.update_revision.is_some()
        && status.current_revision == status.update_revision
        && status.updated_replicas.unwrap_or(0) >= want
        && status.replicas <= want
        && ready >= want
}

/// Whether a Deployment's rollout is over: its status is about its latest spec, every pod left
/// runs that spec (none of an older one still serves or stops), and one is available. Its clients
/// are updated only then: during an upgrade the controllers follow the API server, never lead it.
pub fn rolled_out(deployment: &Deployment) -> bool {
    let status = deployment.status.as_ref();
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let total = status.and_then(|s| s.replicas).unwrap_or(0);
    serves(deployment) && updated >= total
}

fn is_current(generation: Option<i64>, observed: Option<i64>) -> bool {
    observed >= generation
}

/// (ready members, wanted members) of etcd.
fn members(etcd: &StatefulSet) -> (i32, i32) {
    let want = etcd.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = etcd
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    (ready, want)
}

/// etcd is ready when every member is.
pub fn etcd_state(etcd: &StatefulSet) -> WorkloadState {
    let (ready, want) = members(etcd);
    let all = ready >= want;
    WorkloadState {
        ready: all,
        reason: if all { "Ready" } else { "NotReady" },
        message: format!("{ready}/{want} members ready"),
    }
}

/// A control-plane Deployment is ready when every replica is available. `None` is one not
/// created yet because it waits for `waits_for`.
pub fn deployment_state(
    name: &str,
    deployment: Option<&Deployment>,
    waits_for: &str,
) -> WorkloadState {
    let Some(d) = deployment else {
        return WorkloadState {
            ready: false,
            reason: "Waiting",
            message: format!("{name}: waiting for {waits_for}"),
        };
    };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let available = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let all = available >= want;
    WorkloadState {
        ready: all,
        reason: if all { "Available" } else { "NotAvailable" },
        message: format!("{name}: {available}/{want} available"),
    }
}

/// Pods of etcd that still exist (a StatefulSet counts its terminating pods too). A status not
/// yet about the latest spec counts at least one: the scale-down has not been seen.
pub fn running_pods(etcd: &StatefulSet) -> i32 {
    let status = etcd.status.as_ref();
    let pods = status.map_or(0, |s| s.replicas);
    settled(
        etcd.metadata.generation,
        status.and_then(|s| s.observed_generation),
        pods,
    )
}

/// Pods of a Deployment that still run, and those still terminating where the API server
/// reports them; at least one while its status is not about the latest spec.
pub fn running_deployment_pods(deployment: &Deployment) -> i32 {
    let status = deployment.status.as_ref();
    let pods = status.map_or(0, |s| {
        s.replicas.unwrap_or(0) + s.terminating_replicas.unwrap_or(0)
    });
    settled(
        deployment.metadata.generation,
        status.and_then(|s| s.observed_generation),
        pods,
    )
}

fn settled(generation: Option<i64>, observed: Option<i64>, pods: i32) -> i32 {
    if is_current(generation, observed) {
        pods
    } else {
        pods.max(1)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStatus, StatefulSetSpec, StatefulSetStatus,
    };

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn etcd(want: i32, ready: Option<i32>) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(want),
                ..StatefulSetSpec::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(2),
                ready_replicas: ready,
                ..StatefulSetStatus::default()
            }),
        }
    }

    fn deployment(want: i32, available: Option<i32>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(want),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                available_replicas: available,
                ..DeploymentStatus::default()
            }),
        }
    }

    #[test]
    fn the_api_server_waits_for_an_etcd_majority() {
        assert!(!etcd_has_quorum(&etcd(1, None)));
        assert!(!etcd_has_quorum(&etcd(1, Some(0))));
        assert!(etcd_has_quorum(&etcd(1, Some(1))));
        assert!(!etcd_has_quorum(&etcd(3, Some(1))));
        assert!(etcd_has_quorum(&etcd(3, Some(2))));
        assert!(etcd_has_quorum(&etcd(3, Some(3))));
        // A StatefulSet the seed has not reported on yet has no quorum.
        assert!(!etcd_has_quorum(&StatefulSet::default()));
        // Nor one whose status is about the spec before a change: its members will restart.
        let mut changed = etcd(1, Some(1));
        changed.metadata.generation = Some(3);
        assert!(!etcd_has_quorum(&changed));
    }

    #[test]
    fn the_controllers_wait_for_one_available_api_server() {
        assert!(!serves(&deployment(2, None)));
        assert!(!serves(&deployment(2, Some(0))));
        assert!(serves(&deployment(2, Some(1))));
        assert!(!serves(&Deployment::default()));
        let mut changed = deployment(2, Some(2));
        changed.metadata.generation = Some(3);
        assert!(!serves(&changed));
    }

    #[test]
    fn a_rollout_is_over_when_no_pod_of_an_older_spec_is_left() {
        let with = |updated: i32, total: i32, available: i32| {
            let mut d = deployment(2, Some(available));
            if let Some(s) = d.status.as_mut() {
                s.updated_replicas = Some(updated);
                s.replicas = Some(total);
            }
            d
        };
        // Mid-upgrade: one new pod surged, two old still there; then one old stopping.
        assert!(!rolled_out(&with(1, 3, 2)));
        assert!(!rolled_out(&with(2, 3, 2)));
        assert!(rolled_out(&with(2, 2, 2)));
        // A new tenant's first pods are all of the latest spec: one available is enough.
        assert!(rolled_out(&with(2, 2, 1)));
        assert!(!rolled_out(&with(2, 2, 0)));
        // A status about the spec before a change says nothing of the new one.
        let mut changed = with(2, 2, 2);
        changed.metadata.generation = Some(3);
        assert!(!rolled_out(&changed));
    }

    #[test]
    fn etcd_is_ready_only_with_every_member() {
        let quorum_only = etcd_state(&etcd(3, Some(2)));
        assert!(!quorum_only.ready);
        assert_eq!(quorum_only.reason, "NotReady");
        assert_eq!(quorum_only.message, "2/3 members ready");
        let all = etcd_state(&etcd(3, Some(3)));
        assert!(all.ready);
        assert_eq!(all.reason, "Ready");
    }

    #[test]
    fn a_deployment_not_created_yet_says_what_it_waits_for() {
        let waiting = deployment_state("t-scheduler", None, "an available API server");
        assert!(!waiting.ready);
        assert_eq!(waiting.reason, "Waiting");
        assert_eq!(
            waiting.message,
            "t-scheduler: waiting for an available API server"
        );
        let partial = deployment_state("t-apiserver", Some(&deployment(2, Some(1))), "etcd");
        assert!(!partial.ready);
        assert_eq!(partial.message, "t-apiserver: 1/2 available");
        assert!(deployment_state("t-apiserver", Some(&deployment(2, Some(2))), "etcd").ready);
    }

    #[test]
    fn a_rollout_is_finished_when_its_progressing_condition_says_the_new_pods_are_available() {
        use k8s_openapi::api::apps::v1::DeploymentCondition;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let at = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let with = |reason: &str, updated: i32| {
            let mut d = deployment(2, Some(2));
            let status = d.status.as_mut().unwrap();
            status.replicas = Some(2);
            status.updated_replicas = Some(updated);
            status.conditions = Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                last_update_time: Some(Time(at)),
                ..DeploymentCondition::default()
            }]);
            d
        };
        let done = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).ok();
        assert_eq!(
            rollout_finished_at(&with("NewReplicaSetAvailable", 2)),
            done
        );
        assert_eq!(rollout_finished_at(&with("ReplicaSetUpdated", 2)), None);
        assert_eq!(
            rollout_finished_at(&with("NewReplicaSetAvailable", 1)),
            None
        );
        assert_eq!(rollout_finished_at(&deployment(2, Some(2))), None);
    }
}
