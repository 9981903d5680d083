//! The TenantControlPlane CRD refuses bad input at `kubectl apply`, with a message that says what
//! is wrong: the CEL and OpenAPI rules of `crds/` as the real API server runs them (the unit tests
//! in `api/` run the same rules through kube's local evaluator).

use anyhow::{Context as _, Result, ensure};
use hostplane_e2e::{TestEnv, install_crds, random_token};

/// `kubectl apply` of `spec` (YAML of the `spec:` body) as TCP `name`; returns the output.
async fn apply_tcp(env: &TestEnv, name: &str, spec: &str, dry_run: bool) -> Result<(bool, String)> {
    let mut manifest = format!(
        "apiVersion: hostplane.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {name}\nspec:\n"
    );
    for line in spec.lines() {
        manifest.push_str("  ");
        manifest.push_str(line);
        manifest.push('\n');
    }
    let path = std::env::temp_dir().join(format!("tcp-{}.yaml", random_token()));
    std::fs::write(&path, manifest).context("writing the manifest")?;
    let file = path.to_string_lossy().into_owned();
    let mut args = vec!["apply", "-f", file.as_str()];
    if dry_run {
        args.push("--dry-run=server");
    }
    let out = env.kubectl(&args).await;
    let _ = std::fs::remove_file(&path);
    let out = out?;
    Ok((out.success(), format!("{}{}", out.stdout, out.stderr)))
}

#[tokio::test]
async fn bad_specs_are_refused_with_their_message() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("api-refusals").await?;
    let cases = [
        ("version: \"1.37.0\"", "version must look like 1.36.0"),
        ("version: \"v1.36.3\"", "version must look like 1.36.0"),
        (
            "version: \"1.36.3\"\nfoo: bar",
            "unknown field \"spec.foo\"",
        ),
        (
            "version: \"1.36.3\"\ncontrolPlane:\n  service: {type: ClusterIP, nodePort: 30443}",
            "nodePort is only allowed when type is NodePort",
        ),
        (
            "version: \"1.36.3\"\netcd:\n  managed: {replicas: 2}",
            "etcd replicas must be odd (1, 3 or 5)",
        ),
        (
            "version: \"1.36.3\"\ncontrolPlane:\n  apiServer: {replicas: -1}",
            "should be greater than or equal to 1",
        ),
        (
            "version: \"1.36.3\"\nnetwork: {serviceCIDR: 10.96.0.0/12, podCIDR: 10.100.0.0/16}",
            "podCIDR and serviceCIDR must not overlap",
        ),
        (
            "version: \"1.36.3\"\nnetwork: {serviceCIDR: 10.96.0.0/33}",
            "serviceCIDR must be a valid CIDR",
        ),
        (
            "version: \"1.36.3\"\nnetwork: {dnsServiceIP: 10.200.0.10}",
            "dnsServiceIP must be an address inside serviceCIDR",
        ),
        (
            "version: \"1.36.3\"\nnodes: {bootstrapTokenTTL: 1d}",
            "bootstrapTokenTTL must be whole hours or minutes such as 24h or 90m",
        ),
        (
            "version: \"1.36.3\"\nnodes: {bootstrapTokenTTL: 169h}",
            "from 15m to 168h",
        ),
        (
            "version: \"1.36.3\"\nbackup:\n  s3: {endpoint: \"https://h/bucket\", bucket: b-1, credentialsSecretRef: {name: k}}",
            "endpoint must be http:// or https:// and a host (and port) only",
        ),
        (
            "version: \"1.36.3\"\nbackup:\n  s3: {endpoint: \"https://h\", bucket: Upper, credentialsSecretRef: {name: k}}",
            "bucket must be 3-63 lower-case letters",
        ),
        (
            "version: \"1.36.3\"\nbackup:\n  s3: {endpoint: \"https://h\", bucket: b-1, prefix: /abs, credentialsSecretRef: {name: k}}",
            "prefix must not start with '/'",
        ),
        (
            "version: \"1.36.3\"\nhibernation:\n  schedules: [{location: UTC}]",
            "a hibernation schedule needs a start, an end or both",
        ),
        (
            "version: \"1.36.3\"\ngitops:\n  agent:\n    source: {git: {url: \"http://g/r.git\"}, oci: {url: \"oci://r/a\"}}",
            "gitops.agent.source must set exactly one of git and oci",
        ),
        (
            "version: \"1.36.3\"\ngitops:\n  agent:\n    source: {git: {url: \"git@example.com:r.git\"}}",
            "gitops.agent.source.git.url must be an http:// or https:// URL",
        ),
        (
            "version: \"1.36.3\"\ngitops:\n  agent:\n    source: {oci: {url: \"oci://r/a\"}}\n    interval: 5s",
            "gitops.agent.interval must be whole seconds, minutes or hours",
        ),
        (
            "version: \"1.36.3\"\npki: {certificateValidity: 5m}",
            "certificateValidity must be whole minutes or hours such as 8760h or 90m, from 10m to 87600h",
        ),
        (
            "version: \"1.36.3\"\npki: {certificateValidity: 2h, caValidity: 2h}",
            "caValidity must be longer than certificateValidity",
        ),
        (
            "version: \"1.36.3\"\ngitops:\n  registrations: [{name: argo, agent: ArgoCD, role: view, tokenTTL: 5m}]",
            "tokenTTL must be whole minutes or hours such as 1h or 90m, from 10m to 24h",
        ),
        (
            "version: \"1.36.3\"\ngitops:\n  registrations: [{name: Argo, agent: ArgoCD, role: view}]",
            "a registration name must be lowercase letters",
        ),
        (
            "version: \"1.36.3\"\ngitops:\n  registrations: [{name: argo, agent: ArgoCD}]",
            "spec.gitops.registrations[0].role: Required value",
        ),
        (
            "version: \"1.36.3\"\ngitops:\n  registrations: [{name: a, agent: ArgoCD, role: view}, {name: a, agent: Flux, role: view}]",
            "Duplicate value",
        ),
    ];
    let problems = refusals(&env, "bad", &cases).await?;
    ensure!(problems.is_empty(), "{}", problems.join("\n\n"));
    Ok(())
}

/// Server-side dry-run applies of each `(spec, message)` as TCP `name`; a problem for each spec
/// that is accepted or refused without its message.
async fn refusals(env: &TestEnv, name: &str, cases: &[(&str, &str)]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (spec, want) in cases {
        let (ok, out) = apply_tcp(env, name, spec, true).await?;
        if ok || !out.contains(want) {
            problems.push(format!(
                "spec {spec:?}: want a refusal with {want:?}, got (accepted={ok}):\n{out}"
            ));
        }
    }
    Ok(problems)
}

/// Names the tenant's objects cannot carry are refused at admission (the rule on the whole
/// object), and the longest allowed name is accepted.
#[tokio::test]
async fn bad_names_are_refused_with_their_message() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("api-names").await?;
    let spec = "version: \"1.36.3\"";
    let longest = format!("a{}", "b".repeat(46));
    let mut problems = Vec::new();
    for (name, refused) in [
        ("1tenant", true),
        ("a.b", true),
        ("tenant-", true),
        (&*format!("{longest}c"), true),
        (&*longest, false),
    ] {
        let (ok, out) = apply_tcp(&env, name, spec, true).await?;
        let said = out.contains("metadata.name must be at most 47 characters");
        if ok == refused || (refused && !said) {
            problems.push(format!(
                "name {name:?}: want refused={refused} with the name rule's message, got \
                 (accepted={ok}):\n{out}"
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n\n"));
    Ok(())
}

#[tokio::test]
async fn updates_that_break_transition_rules_are_refused() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("api-transitions").await?;
    let (ok, out) = apply_tcp(&env, "t", "version: \"1.36.3\"", false).await?;
    ensure!(ok, "a minimal TenantControlPlane was refused:\n{out}");
    let cases = [
        ("version: \"1.35.4\"", "version must not decrease"),
        ("version: \"1.36.2\"", "version must not decrease"),
        (
            "version: \"1.36.3\"\nnetwork: {serviceCIDR: 10.97.0.0/16}",
            "serviceCIDR is immutable",
        ),
        (
            "version: \"1.36.3\"\nnetwork: {podCIDR: 10.245.0.0/16}",
            "podCIDR is immutable",
        ),
        (
            "version: \"1.36.3\"\nnetwork: {clusterDomain: tenant.local}",
            "clusterDomain is immutable",
        ),
    ];
    let mut problems = refusals(&env, "t", &cases).await?;
    // And what is allowed stays allowed: a patch upgrade.
    let (ok, out) = apply_tcp(&env, "t", "version: \"1.36.4\"", true).await?;
    if !ok {
        problems.push(format!(
            "a patch upgrade 1.36.3 -> 1.36.4 was refused:\n{out}"
        ));
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n\n"));
    Ok(())
}
