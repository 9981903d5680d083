//! `spec.profile`: how each control-plane component is sized and tuned. `Standard` is upstream's
//! defaults and adds nothing to the objects (a tenant created before profiles existed is not
//! rolled by an operator that knows them); `Small` is for many small or mostly idle tenants on one
//! seed. Its settings were chosen with `e2e/bench/density` (docs/benchmarks.md has the figures).
//! A spec's own `resources` and `extraArgs` win over the profile's.

use hostplane_api::v1alpha1::Profile;
use k8s_openapi::api::core::v1::ResourceRequirements;
use serde_json::{Value, json};

/// A component the profile tunes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    ApiServer,
    ControllerManager,
    Scheduler,
}

/// What a profile sets on one component's container.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// CPU and memory requests when the spec sets no `resources`.
    requests: (&'static str, &'static str),
    /// Environment of the Go runtime (GOGC, GOMEMLIMIT).
    env: &'static [(&'static str, &'static str)],
    /// Flags, overriding the builder's own defaults of the same name (and overridden by
    /// `extraArgs`).
    flags: &'static [(&'static str, &'static str)],
}

/// The tuning of `component` under `profile`.
pub fn tuning(profile: Profile, component: Component) -> Tuning {
    use Component::{ApiServer, ControllerManager, Etcd, Scheduler};
    match (profile, component) {
        (Profile::Standard, ApiServer) => Tuning::requests("100m", "256Mi"),
        (Profile::Standard, Etcd | ControllerManager | Scheduler) => {
            Tuning::requests("50m", "64Mi")
        }
        (Profile::Small, Etcd) => Tuning {
            requests: ("20m", "48Mi"),
            env: &[("GOGC", "50")],
            // Raft entries kept in memory between snapshots, and after one for slow followers:
            // 10000 and 5000 by default, sized for busy clusters.
            flags: &[
                ("snapshot-count", "2000"),
                ("snapshot-catchup-entries", "1000"),
            ],
        },
        (Profile::Small, ApiServer) => Tuning {
            requests: ("50m", "192Mi"),
            env: &[("GOGC", "50")],
            flags: &[],
        },
        (Profile::Small, ControllerManager) => Tuning {
            requests: ("20m", "48Mi"),
            env: &[("GOGC", "50")],
            flags: &[],
        },
        (Profile::Small, Scheduler) => Tuning {
            requests: ("10m", "32Mi"),
            env: &[("GOGC", "50")],
            flags: &[],
        },
    }
}

impl Tuning {
    const fn requests(cpu: &'static str, memory: &'static str) -> Self {
        Self {
            requests: (cpu, memory),
            env: &[],
            flags: &[],
        }
    }

    /// The container's `resources`: the spec's when set, else the profile's requests.
    pub fn resources(&self, spec: Option<&ResourceRequirements>) -> Value {
        spec.map_or_else(
            || json!({"requests": {"cpu": self.requests.0, "memory": self.requests.1}}),
            |r| json!(r),
        )
    }

    /// `env` followed by the profile's variables; no `env` key when both are empty (so a Standard
    /// container is what it was before profiles).
    pub fn env(&self, mut env: Vec<Value>) -> Option<Value> {
        env.extend(
            self.env
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value})),
        );
        (!env.is_empty()).then_some(Value::Array(env))
    }

    /// The builder's default flags with the profile's set over them (same name replaced, new
    /// ones added).
    pub fn flags<'a>(&self, mut defaults: Vec<(&'a str, String)>) -> Vec<(&'a str, String)> {
        for (name, value) in self.flags {
            match defaults.iter_mut().find(|(n, _)| n == name) {
                Some(flag) => (*value).clone_into(&mut flag.1),
                None => defaults.push((name, (*value).to_owned())),
            }
        }
        defaults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Component; 4] = [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];

    #[test]
    fn standard_adds_nothing_but_the_requests() {
        for c in ALL {
            let t = tuning(Profile::Standard, c);
            assert_eq!(t.env(vec![]), None, "{c:?}");
            let defaults = vec![("a", "1".to_owned())];
            assert_eq!(t.flags(defaults.clone()), defaults, "{c:?}");
        }
        assert_eq!(
            tuning(Profile::Standard, Component::ApiServer).resources(None),
            json!({"requests": {"cpu": "100m", "memory": "256Mi"}})
        );
    }

    #[test]
    fn small_asks_for_less_than_standard_and_tunes_go() {
        let quantity = |q: &str| -> u64 {
            q.strip_suffix("Mi").map_or_else(
                || q.trim_end_matches('m').parse().unwrap_or(u64::MAX),
                |m| m.parse::<u64>().unwrap_or(u64::MAX) << 20,
            )
        };
        for c in ALL {
            let (small, standard) = (tuning(Profile::Small, c), tuning(Profile::Standard, c));
            assert!(
                quantity(small.requests.0) < quantity(standard.requests.0),
                "{c:?} cpu"
            );
            assert!(
                quantity(small.requests.1) < quantity(standard.requests.1),
                "{c:?} memory"
            );
            let env = small
                .env(vec![json!({"name": "POD_NAME"})])
                .unwrap_or_default();
            assert_eq!(
                env[0],
                json!({"name": "POD_NAME"}),
                "{c:?}: the builder's env first"
            );
            assert!(
                env.as_array()
                    .is_some_and(|e| e.contains(&json!({"name": "GOGC", "value": "50"}))),
                "{c:?}: {env}"
            );
        }
    }

    #[test]
    fn profile_flags_replace_defaults_and_a_spec_sets_its_own_resources() {
        let etcd = tuning(Profile::Small, Component::Etcd);
        let flags = etcd.flags(vec![
            ("snapshot-count", "10000".to_owned()),
            ("name", "x".to_owned()),
        ]);
        assert_eq!(
            flags,
            vec![
                ("snapshot-count", "2000".to_owned()),
                ("name", "x".to_owned()),
                ("snapshot-catchup-entries", "1000".to_owned()),
            ]
        );
        let own = ResourceRequirements::default();
        assert_eq!(etcd.resources(Some(&own)), json!(own));
    }
}
