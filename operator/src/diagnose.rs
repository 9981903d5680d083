//! Why a component's pods are not running, in words a user can act on: read from the pods' status
//! (scheduling, volumes, image pulls, crash loops, configuration errors) and their volume claims.
//! Pure: the controller lists the pods (and gets the claims of pending ones) only while a
//! component is not ready, and puts the first problem found in that component's condition.

use k8s_openapi::api::core::v1::{ContainerStatus, PersistentVolumeClaim, Pod};

/// A reason (the condition's) and a message that says what is wrong and where to look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// The claims a pod mounts, by name.
pub fn claims_of(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// Whether the pod waits to be scheduled.
pub fn unscheduled(pod: &Pod) -> bool {
    scheduling_message(pod).is_some()
}

fn scheduling_message(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| c.message.clone().unwrap_or_default())
}

/// The first problem of the pods of `component` (by the `app.kubernetes.io/component` label),
/// pods being deleted aside; `claims` are the claims of those pods that the controller could read.
pub fn component_problem(
    pods: &[Pod],
    component: &str,
    claims: &[PersistentVolumeClaim],
) -> Option<Problem> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/component"))
                .is_some_and(|c| c == component)
        })
        .find_map(|p| pod_problem(p, claims))
}

/// What keeps `pod` from running, if it is something the user must act on.
pub fn pod_problem(pod: &Pod, claims: &[PersistentVolumeClaim]) -> Option<Problem> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    if let Some(why) = scheduling_message(pod) {
        let pending = claims_of(pod).into_iter().find_map(|claim| {
            let found = claims
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(claim.as_str()))?;
            let phase = found.status.as_ref().and_then(|s| s.phase.as_deref());
            (phase != Some("Bound")).then(|| {
                let class = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone())
                    .map_or_else(|| "the default".to_owned(), |c| format!("{c:?}"));
                (claim, class)
            })
        });
        return Some(match pending {
            Some((claim, class)) => Problem {
                reason: "VolumePending",
                message: format!(
                    "pod {name} waits for its PersistentVolumeClaim {claim}, which is not bound \
                     (StorageClass {class}): check that the StorageClass exists and provisions \
                     volumes (`kubectl describe pvc {claim}` says why); the class is \
                     spec.etcd.managed.storage.storageClassName"
                ),
            },
            None => Problem {
                reason: "Unschedulable",
                message: format!("pod {name} cannot be scheduled: {}", why.trim()),
            },
        });
    }
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| container_problem(name, c))
}

fn container_problem(pod: &str, c: &ContainerStatus) -> Option<Problem> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref().unwrap_or_default();
    let detail = waiting.message.as_deref().unwrap_or_default().trim();
    let container = &c.name;
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            // Only what stays the same from one pull attempt to the next (the kubelet's own words
            // alternate between the pull error and "Back-off pulling image"), so a tenant that
            // waits is not written again and again.
            Some(Problem {
                reason: "ImagePullFailed",
                message: format!(
                    "pod {pod}: container {container} cannot get its image {} (`kubectl describe \
                     pod {pod}` shows the pull error): check spec.registry and spec.version \
                     (images are <registry>/<component>:v<version>) and that the seed's nodes \
                     can pull from that registry",
                    c.image
                ),
            })
        }
        "CrashLoopBackOff" => {
            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let code = last.map_or(0, |t| t.exit_code);
            let said = last
                .and_then(|t| t.message.as_deref())
                .and_then(|m| m.trim().lines().last())
                .unwrap_or("(no message; see its log)");
            Some(Problem {
                reason: "CrashLoopBackOff",
                message: format!(
                    "pod {pod}: container {container} keeps exiting (exit code {code}): {said}; \
                     `kubectl logs {pod} -c {container} --previous` shows its last run \
                     (spec.controlPlane.*.extraArgs may hold a flag it refuses)"
                ),
            })
        }
        "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
            Some(Problem {
                reason: "ContainerConfigError",
                message: format!(
                    "pod {pod}: container {container} cannot start ({reason}): {detail}"
                ),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn etcd_pod(status: &serde_json::Value) -> Pod {
        pod(json!({
            "metadata": {"name": "t-etcd-0", "labels": {"app.kubernetes.io/component": "etcd"}},
            "spec": {"containers": [{"name": "etcd"}], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-t-etcd-0"}},
                {"name": "pki", "secret": {"secretName": "t-etcd-server"}},
            ]},
            "status": status,
        }))
    }

    fn unscheduled_status() -> serde_json::Value {
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]})
    }

    #[test]
    fn a_pending_claim_names_its_storage_class_and_where_to_look() {
        let p = etcd_pod(&unscheduled_status());
        assert!(unscheduled(&p));
        assert_eq!(claims_of(&p), ["data-t-etcd-0"]);
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-t-etcd-0"},
            "spec": {"storageClassName": "nope"},
            "status": {"phase": "Pending"},
        }))
        .unwrap();
        let problem = component_problem(std::slice::from_ref(&p), "etcd", &[claim]).unwrap();
        assert_eq!(problem.reason, "VolumePending");
        assert!(
            problem.message.contains("data-t-etcd-0"),
            "{}",
            problem.message
        );
        assert!(
            problem.message.contains("StorageClass \"nope\""),
            "{}",
            problem.message
        );
        // Without the claim (not readable), the scheduler's words.
        let problem = pod_problem(&p, &[]).unwrap();
        assert_eq!(problem.reason, "Unschedulable");
        assert!(
            problem.message.contains("unbound immediate"),
            "{}",
            problem.message
        );
        // Another component's pods are not this one's problem.
        assert_eq!(component_problem(&[p], "kube-apiserver", &[]), None);
    }

    #[test]
    fn image_pulls_crash_loops_and_config_errors_say_what_to_check() {
        let waiting = |reason: &str, message: &str| {
            etcd_pod(&json!({"phase": "Pending", "containerStatuses": [{
                "name": "etcd", "image": "bad.example/etcd:v3.6.16", "imageID": "", "ready": false,
                "restartCount": 4,
                "state": {"waiting": {"reason": reason, "message": message}},
                "lastState": {"terminated": {"exitCode": 2, "message": "flag provided but not defined: -nope\nusage"}},
            }]}))
        };
        let pull = pod_problem(
            &waiting(
                "ImagePullBackOff",
                "Back-off pulling image \"bad.example/etcd:v3.6.16\"",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(pull.reason, "ImagePullFailed");
        assert!(
            pull.message.contains("bad.example/etcd:v3.6.16")
                && pull.message.contains("spec.registry")
        );
        // The same words for both states of a failing pull: no new status at each attempt.
        let err = pod_problem(
            &waiting("ErrImagePull", "dial tcp: lookup bad.example: no such host"),
            &[],
        )
        .unwrap();
        assert_eq!(err, pull);
        let crash = pod_problem(&waiting("CrashLoopBackOff", "back-off 40s"), &[]).unwrap();
        assert_eq!(crash.reason, "CrashLoopBackOff");
        assert!(
            crash.message.contains("(exit code 2): usage;"),
            "{}",
            crash.message
        );
        assert!(
            crash
                .message
                .ends_with("(spec.controlPlane.*.extraArgs may hold a flag it refuses)")
        );
        assert!(
            crash.message.contains(": usage;"),
            "the last line of the termination message: {}",
            crash.message
        );
        let config = pod_problem(
            &waiting("CreateContainerConfigError", "secret \"x\" not found"),
            &[],
        )
        .unwrap();
        assert_eq!(config.reason, "ContainerConfigError");
        // Starting up is no problem.
        assert_eq!(pod_problem(&waiting("ContainerCreating", ""), &[]), None);
        let running = etcd_pod(&json!({"phase": "Running", "containerStatuses": [{
            "name": "etcd", "image": "e", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"running": {}}}]}));
        assert_eq!(pod_problem(&running, &[]), None);
        // A pod being deleted is not looked at.
        let mut deleted = waiting("ImagePullBackOff", "");
        deleted.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-11-23T00:00:00Z")).unwrap());
        assert_eq!(component_problem(&[deleted], "etcd", &[]), None);
    }
}
