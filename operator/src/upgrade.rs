//! Pure version-upgrade rules: which version each part of the control plane runs during an
//! upgrade, and Kubernetes' version-skew policy towards the tenant's kubelets.
//!
//! An upgrade moves the API server first; the controller-manager and scheduler follow once its
//! rollout is over (see [`crate::rollout::rolled_out`]), the addons (kube-proxy) once theirs is.
//! `status.version` moves only then. Admission already refuses a downgrade and a skipped minor.

/// The oldest kubelet minor an API server supports: three minors older
/// (<https://kubernetes.io/releases/version-skew-policy/#kubelet>).
pub const KUBELET_MAX_MINORS_BEHIND: u32 = 3;

/// `(minor, patch)` of `1.<minor>.<patch>` or `v1.<minor>.<patch>[-suffix]`; `None` otherwise.
#[must_use]
pub fn minor_patch(version: &str) -> Option<(u32, u32)> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let mut parts = v.splitn(3, '.');
    if parts.next()? != "1" {
        return None;
    }
    let minor = parts.next()?.parse().ok()?;
    let patch: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((minor, patch.parse().ok()?))
}

/// The kubelets (node name, kubelet version) that an API server at `target` would break the
/// skew policy with: newer than it, or more than three minors older. Each as
/// `<node> (<version>)`; an unparsable kubelet version counts as breaking it.
#[must_use]
pub fn skew_violations(target: &str, kubelets: &[(String, String)]) -> Vec<String> {
    let Some((minor, _)) = minor_patch(target) else {
        return Vec::new();
    };
    kubelets
        .iter()
        .filter(|(_, version)| {
            minor_patch(version)
                .is_none_or(|(m, _)| m > minor || m + KUBELET_MAX_MINORS_BEHIND < minor)
        })
        .map(|(node, version)| format!("{node} ({version})"))
        .collect()
}

/// Reason of VersionCurrent when kubelets would break the skew policy.
pub const VERSION_SKEW: &str = "VersionSkew";
/// Reason of VersionCurrent when the tenant's nodes could not be listed before an upgrade.
pub const NODES_UNKNOWN: &str = "NodesUnknown";

/// What the VersionCurrent condition says of a version change held by the skew policy.
#[must_use]
pub fn skew_message(running: &str, target: &str, violations: &[String]) -> String {
    let (lowest, highest) = minor_patch(target).map_or((0, 0), |(m, _)| {
        (m.saturating_sub(KUBELET_MAX_MINORS_BEHIND), m)
    });
    format!(
        "the upgrade from {running} to {target} waits: an API server at {target} supports \
         kubelets from 1.{lowest} to 1.{highest}, and these nodes run others: {}. Upgrade (or \
         drain and delete) those nodes; the upgrade then proceeds by itself. The control plane \
         keeps running {running}.",
        violations.join(", ")
    )
}

/// Condition type: whether every control-plane component runs `spec.version`.
pub const VERSION_CURRENT: &str = "VersionCurrent";

/// What one pass knows of the version.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// `spec.version`.
    pub wanted: &'a str,
    /// `status.version` before this pass: what every component ran when last complete.
    pub running: Option<&'a str>,
    /// Why the upgrade waits (the skew policy), if it does: reason and message.
    pub held: Option<(&'static str, &'a str)>,
    /// The API server's and the controllers' rollouts are over (at the version built this pass).
    pub rolled_out: bool,
    /// The control plane is Ready.
    pub ready: bool,
}

/// The version after a pass: `status.version`, whether the phase is Upgrading, and the
/// VersionCurrent condition (`status`, `reason`, `message`; none before the first Ready).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionState {
    pub running: Option<String>,
    pub upgrading: bool,
    pub condition: Option<(bool, &'static str, String)>,
}

/// `status.version` moves to `spec.version` only when the new control plane is Ready and no
/// component still runs the old one; until then the phase is Upgrading (unless held).
#[must_use]
pub fn state(seen: Seen<'_>) -> VersionState {
    let current = |version: &str| {
        Some((
            true,
            "Current",
            format!("kube-apiserver, kube-controller-manager and kube-scheduler run {version}"),
        ))
    };
    if let Some((reason, why)) = seen.held {
        return VersionState {
            running: seen.running.map(str::to_owned),
            upgrading: false,
            condition: Some((false, reason, why.to_owned())),
        };
    }
    if seen.rolled_out && seen.ready {
        return VersionState {
            running: Some(seen.wanted.to_owned()),
            upgrading: false,
            condition: current(seen.wanted),
        };
    }
    match seen.running {
        Some(running) if running != seen.wanted => VersionState {
            running: Some(running.to_owned()),
            upgrading: true,
            condition: Some((
                false,
                "Upgrading",
                format!(
                    "upgrading from {running} to {}: kube-apiserver first (one pod at a time), \
                     then kube-controller-manager and kube-scheduler, then kube-proxy; \
                     status.version moves once the control plane runs {} and serves",
                    seen.wanted, seen.wanted
                ),
            )),
        },
        Some(running) => VersionState {
            running: Some(running.to_owned()),
            upgrading: false,
            condition: current(running),
        },
        None => VersionState {
            running: None,
            upgrading: false,
            condition: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(running: Option<&str>, rolled_out: bool, ready: bool) -> Seen<'_> {
        Seen {
            wanted: "1.36.3",
            running,
            held: None,
            rolled_out,
            ready,
        }
    }

    #[test]
    fn the_version_moves_only_when_every_component_runs_it_and_serves() {
        // Mid-upgrade: the API server rolls (or the controllers do), or the new one is not Ready.
        for (rolled_out, ready) in [(false, true), (true, false), (false, false)] {
            let s = state(seen(Some("1.35.4"), rolled_out, ready));
            assert_eq!(s.running.as_deref(), Some("1.35.4"));
            assert!(s.upgrading);
            assert_eq!(
                s.condition.as_ref().map(|c| (c.0, c.1)),
                Some((false, "Upgrading"))
            );
        }
        let done = state(seen(Some("1.35.4"), true, true));
        assert_eq!(done.running.as_deref(), Some("1.36.3"));
        assert!(!done.upgrading);
        assert_eq!(done.condition.map(|c| (c.0, c.1)), Some((true, "Current")));
    }

    #[test]
    fn a_new_tenant_has_no_version_until_ready_and_a_renewal_rollout_is_no_upgrade() {
        let new = state(seen(None, false, false));
        assert_eq!(
            new,
            VersionState {
                running: None,
                upgrading: false,
                condition: None
            }
        );
        assert_eq!(
            state(seen(None, true, true)).running.as_deref(),
            Some("1.36.3")
        );
        let renewing = state(seen(Some("1.36.3"), false, true));
        assert!(!renewing.upgrading);
        assert_eq!(renewing.running.as_deref(), Some("1.36.3"));
        assert_eq!(renewing.condition.map(|c| c.1), Some("Current"));
    }

    #[test]
    fn a_held_upgrade_keeps_the_running_version_and_says_why() {
        let s = state(Seen {
            held: Some((VERSION_SKEW, "nodes too old")),
            ..seen(Some("1.35.4"), true, true)
        });
        assert_eq!(s.running.as_deref(), Some("1.35.4"));
        assert!(!s.upgrading);
        assert_eq!(
            s.condition,
            Some((false, "VersionSkew", "nodes too old".to_owned()))
        );
    }

    fn nodes(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn versions_parse_with_or_without_v_and_suffix() {
        assert_eq!(minor_patch("1.36.3"), Some((36, 3)));
        assert_eq!(minor_patch("v1.35.4"), Some((35, 4)));
        assert_eq!(minor_patch("v1.36.0-rc.1+abc"), Some((36, 0)));
        for bad in ["2.1.0", "1.36", "v1.x.1", "", "1..1"] {
            assert_eq!(minor_patch(bad), None, "{bad}");
        }
    }

    #[test]
    fn kubelets_may_be_up_to_three_minors_older_never_newer() {
        let fleet = nodes(&[
            ("same", "v1.36.3"),
            ("older-patch", "v1.36.1"),
            ("three-behind", "v1.33.9"),
            ("four-behind", "v1.32.0"),
            ("newer", "v1.37.0"),
            ("garbled", "dev"),
        ]);
        assert_eq!(
            skew_violations("1.36.3", &fleet),
            ["four-behind (v1.32.0)", "newer (v1.37.0)", "garbled (dev)"]
        );
        // A patch-level upgrade keeps the same window.
        assert_eq!(
            skew_violations("1.36.4", &nodes(&[("a", "v1.36.3"), ("b", "v1.33.0")])),
            Vec::<String>::new()
        );
        // Before the upgrade 1.35 -> 1.36 a 1.32 kubelet was fine; after it, it is not.
        let old = nodes(&[("old", "v1.32.5")]);
        assert!(skew_violations("1.35.4", &old).is_empty());
        assert_eq!(skew_violations("1.36.3", &old), ["old (v1.32.5)"]);
        assert!(skew_violations("1.36.3", &[]).is_empty());
    }

    #[test]
    fn the_skew_message_names_the_nodes_the_window_and_what_to_do() {
        let m = skew_message("1.35.4", "1.36.3", &["old (v1.32.5)".to_owned()]);
        assert!(m.contains("supports kubelets from 1.33 to 1.36"), "{m}");
        assert!(m.contains("old (v1.32.5)"), "{m}");
        assert!(m.contains("keeps running 1.35.4"), "{m}");
    }
}
