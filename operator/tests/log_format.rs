//! The operator binary's log formats, without a cluster: with nothing to talk to it logs one error
//! and exits non-zero, which is enough to see the format.

use std::process::Command;

fn run(format: Option<&str>) -> std::io::Result<std::process::Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostplane-operator"));
    cmd.env("KUBECONFIG", "/nonexistent/hostplane-test-kubeconfig")
        .env("KUBERNETES_SERVICE_HOST", "")
        .env("HOSTPLANE_METRICS_ADDR", "off")
        .env_remove("RUST_LOG");
    match format {
        Some(f) => cmd.env("HOSTPLANE_LOG_FORMAT", f),
        None => cmd.env_remove("HOSTPLANE_LOG_FORMAT"),
    };
    cmd.output()
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = run(Some("json")).unwrap();
    assert!(!out.status.success(), "no cluster: the operator must fail");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "{stdout}");
    assert_eq!(lines[0]["fields"]["message"], "hostplane-operator starting");
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no seed cluster"))),
        "{stdout}"
    );
}

#[test]
fn text_is_the_default_and_an_unknown_format_is_refused() {
    let text = run(None).unwrap();
    let stdout = String::from_utf8(text.stdout).unwrap();
    assert!(stdout.contains("hostplane-operator starting"), "{stdout}");
    assert!(serde_json::from_str::<serde_json::Value>(stdout.lines().next().unwrap()).is_err());
    let bad = run(Some("yaml")).unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8(bad.stderr)
            .unwrap()
            .contains("HOSTPLANE_LOG_FORMAT must be text or json")
    );
}
