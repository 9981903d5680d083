//! A node joins with the `<tcp>-join` Secret only: kubeadm's discovery (cluster-info signed for
//! the token, the CA pin), TLS bootstrap (a node client CSR auto-approved and issued, and nothing
//! else approved), and revoked or expired tokens refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hostplane_e2e::{Attempt, TestEnv, install_crds, poll_until, random_token};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use super::{Scratch, Tcp, kubectl_as};

/// The user name the tenant sees for `kubeconfig`, or the error kubectl printed.
async fn whoami(kubeconfig: &str) -> Result<std::result::Result<String, String>> {
    let out = kubectl_as(
        kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .await?;
    Ok(if out.success() {
        Ok(out.stdout.trim().to_owned())
    } else {
        Err(out.stderr.trim().to_owned())
    })
}

/// Waits until `kubeconfig` is refused as Unauthorized (token caches take a moment).
pub(super) async fn wait_refused(what: &str, kubeconfig: &str) -> Result<()> {
    poll_until(what, Duration::from_secs(60), || async {
        Ok(match whoami(kubeconfig).await? {
            Err(e) if e.contains("Unauthorized") || e.contains("401") => Attempt::Done(()),
            other => Attempt::NotYet(format!("{other:?}")),
        })
    })
    .await
}

/// An HTTPS client that trusts the tenant's CA and presents no credential (anonymous).
fn anonymous_client(ca_pem: &str) -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("the join Secret's CA")?;
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .context("building an anonymous client")
}

fn kubeconfig_with_user(cluster: &Value, user: &Value) -> String {
    json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "t", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "t", "user": "u"}}],
        "current-context": "c",
    })
    .to_string()
}

/// A CSR as a kubelet makes it (ECDSA P-256, no SANs), and its private key, PEM.
fn csr(common_name: &str, organization: &str) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).context("CSR params")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, organization);
    let request = params.serialize_request(&key).context("signing the CSR")?;
    Ok((request.pem().context("CSR PEM")?, key.serialize_pem()))
}

fn csr_object(name: &str, pem: &str, signer: &str) -> String {
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": STANDARD.encode(pem),
            "signerName": signer,
            "usages": ["digital signature", "client auth"],
        },
    })
    .to_string()
}

fn join_data(secret: &Secret, key: &str) -> Result<String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| format!("the join Secret has no key {key}"))?;
    String::from_utf8(bytes.0.clone()).with_context(|| format!("join Secret key {key}"))
}

#[tokio::test]
async fn a_node_bootstraps_with_the_join_secret_only() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("tcp-join").await?;
    let tcp = Tcp::apply(&env, "j1").await?;
    tcp.wait_ready().await?;
    let scratch = Scratch::new()?;
    let admin = scratch.write("admin", &tcp.kubeconfig().await?)?;

    // The join Secret: token, CA pin, bootstrap kubeconfig, and the kubeadm command made of them.
    let join = env
        .api::<Secret>()
        .get("j1-join")
        .await
        .context("reading Secret j1-join")?;
    let token = join_data(&join, "token")?;
    let pin = join_data(&join, "ca-cert-hash")?;
    let bootstrap_text = join_data(&join, "bootstrap-kubeconfig")?;
    let bootstrap: Value =
        serde_json::from_str(&bootstrap_text).context("the bootstrap kubeconfig is not JSON")?;
    let cluster = bootstrap["clusters"][0]["cluster"].clone();
    let server = cluster["server"].as_str().context("no server")?.to_owned();
    let endpoint = server.trim_start_matches("https://").to_owned();
    let (token_id, _) = token.split_once('.').context("token without a dot")?;
    ensure!(
        join_data(&join, "join-command")?
            == format!(
                "kubeadm join {endpoint} --token {token} --discovery-token-ca-cert-hash {pin}"
            ),
        "unexpected join command"
    );
    let bootstrap = scratch.write("bootstrap", &bootstrap_text)?;
    let ca = join_data(&join, "ca.crt")?;

    assert_discovery(&server, &ca, token_id, &endpoint, &token, &pin).await?;
    assert_tls_bootstrap(&scratch, &bootstrap, &cluster).await?;
    assert_bad_tokens_refused(&scratch, &tcp, &admin, &bootstrap, &cluster, token_id).await?;
    assert_token_rotates_before_expiry(&env, &scratch, &tcp, &token, &bootstrap).await
}

/// A token with less than a third of its life left is replaced: the join Secret gets a new one
/// the tenant accepts, and the old one stays valid until it expires. (The age is simulated by
/// moving the Secret's recorded expiration close; the tenant's copy keeps its real one.)
async fn assert_token_rotates_before_expiry(
    env: &TestEnv,
    scratch: &Scratch,
    tcp: &Tcp<'_>,
    old_token: &str,
    old_bootstrap: &str,
) -> Result<()> {
    let soon = time_in(120)?;
    let patch = json!({"stringData": {"expiration": soon}}).to_string();
    env.kubectl(&[
        "patch", "secret", "j1-join", "--type", "merge", "-p", &patch,
    ])
    .await?
    .ok()
    .context("moving the join token's recorded expiration close")?;
    tcp.touch("token-aged").await?;
    let new_token = poll_until(
        "the operator mints a new join token",
        Duration::from_secs(60),
        || async {
            let join = env.api::<Secret>().get("j1-join").await?;
            let token = join_data(&join, "token")?;
            Ok(if token == old_token {
                Attempt::NotYet("the same token".into())
            } else {
                Attempt::Done(join)
            })
        },
    )
    .await?;
    let new_bootstrap = scratch.write(
        "bootstrap-new",
        &join_data(&new_token, "bootstrap-kubeconfig")?,
    )?;
    poll_until(
        "the new token authenticates",
        Duration::from_secs(30),
        || async {
            Ok(match whoami(&new_bootstrap).await? {
                Ok(user) => Attempt::Done(user),
                Err(e) => Attempt::NotYet(e),
            })
        },
    )
    .await?;
    let old = whoami(old_bootstrap).await?;
    ensure!(
        old.is_ok(),
        "the old token stopped working before its expiry: {old:?}"
    );
    Ok(())
}

/// RFC 3339 time `seconds` from now.
fn time_in(seconds: i64) -> Result<String> {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting a time")
}

/// cluster-info is readable anonymously and signed for the token (by the tenant's
/// bootstrapsigner); nothing else is; kubeadm's discovery with token and pin succeeds, and fails
/// with a wrong pin.
async fn assert_discovery(
    server: &str,
    ca: &str,
    token_id: &str,
    endpoint: &str,
    token: &str,
    pin: &str,
) -> Result<()> {
    let http = anonymous_client(ca)?;
    let url = |path: &str| format!("{server}{path}");
    let jws = format!("jws-kubeconfig-{token_id}");
    poll_until(
        "cluster-info is signed for the join token",
        Duration::from_secs(60),
        || async {
            let resp = http
                .get(url(
                    "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                ))
                .send()
                .await;
            let (status, body) = match resp {
                Ok(r) => (r.status(), r.text().await.unwrap_or_default()),
                Err(e) => return Ok(Attempt::NotYet(format!("{e:#}"))),
            };
            let cm: Value = serde_json::from_str(&body).unwrap_or_default();
            Ok(if status.is_success() && cm["data"][&jws].is_string() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("{status}: {body}"))
            })
        },
    )
    .await?;
    let other = http
        .get(url(
            "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
        ))
        .send()
        .await
        .context("anonymous GET of kubeadm-config")?
        .status();
    ensure!(
        other == reqwest::StatusCode::FORBIDDEN,
        "anonymous GET of kube-system/kubeadm-config answered {other}, want 403"
    );

    if std::env::var("E2E_LOCAL_SEED").is_ok_and(|v| v == "1") {
        assert_kubeadm_join_dry_run(endpoint, token, pin).await?;
    } else {
        hostplane_e2e::skip(
            "a_node_bootstraps_with_the_join_secret_only (its kubeadm join part)",
            "runs `kubeadm join --dry-run` as root on this host, which only the local seed allows \
             (E2E_LOCAL_SEED=1)",
        )?;
    }
    Ok(())
}

/// `kubeadm join --dry-run` (the pinned kubeadm) with the join Secret's token and CA pin: it
/// discovers the tenant through cluster-info, fetches kubeadm-config and kubelet-config with the
/// token, and writes the kubelet's files into a dry-run folder, which must hold our kubelet
/// configuration. A wrong pin fails. The dry-run folders are removed again.
async fn assert_kubeadm_join_dry_run(endpoint: &str, token: &str, pin: &str) -> Result<()> {
    let etc = Path::new("/etc/kubernetes");
    let existed = etc.exists();
    let dry_runs = || -> Vec<PathBuf> {
        std::fs::read_dir(etc.join("tmp"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let before = dry_runs();
    let join = |pin: String| async move {
        hostplane_e2e::run_command(
            "kubeadm",
            &[
                "join",
                endpoint,
                "--token",
                token,
                "--discovery-token-ca-cert-hash",
                &pin,
                "--ignore-preflight-errors=all",
                "--dry-run",
            ],
        )
        .await
    };
    let good = join(pin.to_owned()).await;
    let bad = join(format!("sha256:{}", "0".repeat(64))).await;
    let ours: Vec<PathBuf> = dry_runs()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let kubelet_config = ours
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("config.yaml")).ok())
        .unwrap_or_default();
    for dir in &ours {
        let _ = std::fs::remove_dir_all(dir);
    }
    if !existed {
        let _ = std::fs::remove_dir_all(etc);
    }
    let (good, bad) = (good?, bad?);
    ensure!(
        good.success(),
        "kubeadm join --dry-run with the join Secret's token and pin failed:\n{}",
        good.stderr
    );
    ensure!(
        kubelet_config.contains("clusterDomain: cluster.local")
            && kubelet_config.contains("rotateCertificates: true"),
        "kubeadm did not get the tenant's kubelet-config:\n{kubelet_config}"
    );
    ensure!(
        !bad.success() && bad.stderr.contains("pinned"),
        "kubeadm join accepted a wrong CA pin:\n{}",
        bad.stderr
    );
    Ok(())
}

/// With the bootstrap credential: a node client CSR is approved and issued, and its certificate
/// authenticates as the node; a CSR for another signer stays unapproved.
async fn assert_tls_bootstrap(scratch: &Scratch, bootstrap: &str, cluster: &Value) -> Result<()> {
    let node = format!("worker-{}", random_token());
    let (node_csr, node_key) = csr(&format!("system:node:{node}"), "system:nodes")?;
    let (admin_csr, _) = csr("sneaky-admin", "kubeadm:cluster-admins")?;
    let node_csr_name = format!("node-csr-{node}");
    let other_csr_name = format!("other-csr-{node}");
    for (name, pem, signer) in [
        (
            &node_csr_name,
            &node_csr,
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        (
            &other_csr_name,
            &admin_csr,
            "kubernetes.io/kube-apiserver-client",
        ),
    ] {
        let file = scratch.write(name, &csr_object(name, pem, signer))?;
        kubectl_as(bootstrap, &["create", "-f", &file])
            .await?
            .ok()
            .with_context(|| format!("the bootstrap credential creating CSR {name}"))?;
    }
    let certificate = poll_until(
        "the node client CSR is approved and issued",
        Duration::from_secs(60),
        || async {
            let out = kubectl_as(
                bootstrap,
                &[
                    "get",
                    "csr",
                    &node_csr_name,
                    "-o",
                    "jsonpath={.status.certificate}",
                ],
            )
            .await?;
            Ok(if out.success() && !out.stdout.trim().is_empty() {
                Attempt::Done(out.stdout.trim().to_owned())
            } else {
                Attempt::NotYet(format!("{} {}", out.stdout.trim(), out.stderr.trim()))
            })
        },
    )
    .await?;
    let node_kubeconfig = scratch.write(
        "node",
        &kubeconfig_with_user(
            cluster,
            &json!({
                "client-certificate-data": certificate,
                "client-key-data": STANDARD.encode(node_key),
            }),
        ),
    )?;
    let user = whoami(&node_kubeconfig).await?;
    ensure!(
        user.as_deref() == Ok(format!("system:node:{node}").as_str()),
        "the issued node certificate authenticates as {user:?}"
    );
    // The approver has run (it approved the node's); the other CSR was not approved.
    let other = kubectl_as(
        bootstrap,
        &[
            "get",
            "csr",
            &other_csr_name,
            "-o",
            "jsonpath={.status.conditions[*].type}",
        ],
    )
    .await?
    .ok()?;
    ensure!(
        !other.stdout.contains("Approved"),
        "a CSR for {other_csr_name} (not a node client certificate) was approved"
    );
    Ok(())
}

/// The operator puts back a join token deleted in the tenant once the TCP is reconciled; a
/// revoked (deleted) token is refused; an expired token is refused. Revocation is shown with a
/// token of the test's own: the operator's comes back at any reconcile (another test restarts
/// the operator), which is the point of the first check.
async fn assert_bad_tokens_refused(
    scratch: &Scratch,
    tcp: &Tcp<'_>,
    admin: &str,
    bootstrap: &str,
    cluster: &Value,
    token_id: &str,
) -> Result<()> {
    let secret = format!("bootstrap-token-{token_id}");
    kubectl_as(admin, &["-n", "kube-system", "delete", "secret", &secret])
        .await?
        .ok()
        .context("deleting the join token in the tenant")?;
    tcp.touch("token-deleted").await?;
    poll_until(
        "the operator puts the join token back",
        Duration::from_secs(90),
        || async {
            let present = kubectl_as(admin, &["-n", "kube-system", "get", "secret", &secret])
                .await?
                .success();
            Ok(match (present, whoami(bootstrap).await?) {
                (true, Ok(user)) => Attempt::Done(user),
                (present, other) => Attempt::NotYet(format!("present={present} {other:?}")),
            })
        },
    )
    .await?;

    // Tokens of the test's own, stored in the tenant as kubeadm stores them.
    let token = |id: &str, expiration: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "token-id": id, "token-secret": "0123456789abcdef", "expiration": expiration,
                "usage-bootstrap-authentication": "true",
                "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
            },
        })
        .to_string()
    };
    let user_of = |id: &str| {
        kubeconfig_with_user(cluster, &json!({"token": format!("{id}.0123456789abcdef")}))
    };
    for (id, expiration) in [
        ("rev123", "2099-01-01T00:00:00Z"),
        ("exp123", "2020-01-01T00:00:00Z"),
    ] {
        let file = scratch.write(&format!("token-{id}"), &token(id, expiration))?;
        kubectl_as(admin, &["create", "-f", &file])
            .await?
            .ok()
            .with_context(|| format!("creating token {id}"))?;
    }
    let revoked = scratch.write("revoked", &user_of("rev123"))?;
    poll_until(
        "a new token authenticates",
        Duration::from_secs(30),
        || async {
            Ok(match whoami(&revoked).await? {
                Ok(user) => Attempt::Done(user),
                Err(e) => Attempt::NotYet(e),
            })
        },
    )
    .await?;
    kubectl_as(
        admin,
        &[
            "-n",
            "kube-system",
            "delete",
            "secret",
            "bootstrap-token-rev123",
        ],
    )
    .await?
    .ok()
    .context("revoking token rev123")?;
    wait_refused("the revoked token is refused", &revoked).await?;

    let expired = scratch.write("expired", &user_of("exp123"))?;
    let result = whoami(&expired).await?;
    ensure!(
        result
            .as_ref()
            .is_err_and(|e| e.contains("Unauthorized") || e.contains("401")),
        "an expired bootstrap token was not refused as Unauthorized: {result:?}"
    );
    Ok(())
}

/// `e2e/seed/seed` of this checkout.
const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/seed/seed");

/// Polls `kubectl_as(kubeconfig, args)` until its stdout satisfies `done`; returns the stdout.
async fn poll_kubectl(
    what: &str,
    timeout: Duration,
    kubeconfig: &str,
    args: &[&str],
    done: impl Fn(&str) -> bool,
) -> Result<String> {
    poll_until(what, timeout, || async {
        let out = kubectl_as(kubeconfig, args).await?;
        Ok(if out.success() && done(out.stdout.trim()) {
            Attempt::Done(out.stdout.trim().to_owned())
        } else {
            Attempt::NotYet(format!("{} {}", out.stdout.trim(), out.stderr.trim()))
        })
    })
    .await
}

#[tokio::test]
async fn a_worker_joins_with_the_join_secret_and_runs_pods() -> Result<()> {
    if !std::env::var("E2E_LOCAL_SEED").is_ok_and(|v| v == "1") {
        return hostplane_e2e::skip(
            "a_worker_joins_with_the_join_secret_and_runs_pods",
            "adds a worker node with `e2e/seed/seed node add`, which only the local seed has \
             (E2E_LOCAL_SEED=1)",
        );
    }
    install_crds().await?;
    let env = TestEnv::new("tcp-worker").await?;
    let tcp = Tcp::apply(&env, "w1").await?;
    tcp.wait_ready().await?;
    let scratch = Scratch::new()?;
    let admin = scratch.write("admin", &tcp.kubeconfig().await?)?;

    // A node in its own network namespace with its own containerd and kubelet, given nothing
    // but the join Secret's bootstrap kubeconfig.
    let node = format!("e2e{}", &random_token()[4..10]);
    let join = format!("w1-join@{}", env.namespace());
    let added = hostplane_e2e::run_command(SEED, &["node", "add", &node, "--join", &join]).await;
    let result = worker_checks(&env, &tcp, &admin, &node).await;
    let removed = hostplane_e2e::run_command(SEED, &["node", "rm", &node]).await;
    added?.ok().context("seed node add")?;
    result?;
    removed?.ok().context("seed node rm")?;
    let netns = hostplane_e2e::run_command("ip", &["netns", "list"])
        .await?
        .ok()?;
    ensure!(
        !netns.stdout.contains(&format!("hpn-{node}")),
        "seed node rm left the network namespace hpn-{node}"
    );
    Ok(())
}

async fn worker_checks(env: &TestEnv, tcp: &Tcp<'_>, admin: &str, node: &str) -> Result<()> {
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    poll_kubectl(
        "the worker's Node is Ready in the tenant",
        Duration::from_secs(120),
        admin,
        &["get", "node", node, "-o", ready],
        |s| s == "True",
    )
    .await?;
    // Its client certificate came by TLS bootstrap, requested with the token, approved by the
    // tenant; the kubelet now uses the certificate it rotates.
    let csrs = kubectl_as(
        admin,
        &[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.spec.username} {.status.conditions[*].type}{\"\\n\"}{end}",
        ],
    )
    .await?
    .ok()?;
    ensure!(
        csrs.stdout
            .lines()
            .any(|l| l.starts_with("system:bootstrap:") && l.ends_with("Approved")),
        "no CSR from the bootstrap token was approved:\n{}",
        csrs.stdout
    );
    let rotated = Path::new(
        &std::env::var("HOSTPLANE_SEED_DIR")
            .unwrap_or_else(|_| "/var/lib/hostplane-seed".to_owned()),
    )
    .join("nodes")
    .join(node)
    .join("pki/kubelet-client-current.pem");
    ensure!(
        rotated.exists(),
        "the kubelet has no rotated client certificate at {}",
        rotated.display()
    );

    // The TCP counts it; the addons run on it.
    poll_until(
        "tcp/w1 reports one Ready node and AddonsReady",
        Duration::from_secs(180),
        || async {
            let out = env
                .kubectl(&[
                    "get",
                    "tcp",
                    "w1",
                    "-o",
                    "jsonpath={.status.nodes.ready} {.status.conditions[?(@.type==\"AddonsReady\")].status}",
                ])
                .await?;
            let _ = tcp.touch("worker-ready").await; // the operator is told of no tenant event
            Ok(if out.stdout.trim() == "1 True" {
                Attempt::Done(())
            } else {
                Attempt::NotYet(out.stdout.trim().to_owned())
            })
        },
    )
    .await?;
    pods_on_the_worker(admin).await?;

    // An addon switched off is removed from the tenant.
    env.kubectl(&[
        "patch",
        "tcp",
        "w1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"addons":{"coreDNS":{"enabled":false}}}}"#,
    ])
    .await?
    .ok()?;
    poll_kubectl(
        "CoreDNS is removed from the tenant",
        Duration::from_secs(60),
        admin,
        &[
            "-n",
            "kube-system",
            "get",
            "deploy,svc,cm",
            "-l",
            "k8s-app=kube-dns",
            "-o",
            "name",
        ],
        str::is_empty,
    )
    .await?;
    Ok(())
}

/// A pod from an imported image runs on the worker; from it, the API answers through the
/// `kubernetes` Service with its service-account token, names resolve through CoreDNS, a
/// ClusterIP Service reaches another pod; `kubectl logs` and `exec` work through the tenant API.
async fn pods_on_the_worker(admin: &str) -> Result<()> {
    let image = "hostplane.dev/e2e/test-client:dev";
    for (pod, cmd) in [("server", "serve"), ("client", "sleep")] {
        kubectl_as(
            admin,
            &[
                "run",
                pod,
                "--image",
                image,
                "--image-pull-policy=Never",
                "--command",
                "--",
                "/usr/local/bin/test-client",
                cmd,
            ],
        )
        .await?
        .ok()?;
    }
    kubectl_as(
        admin,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/server",
            "pod/client",
            "--timeout=50s",
        ],
    )
    .await?
    .ok()
    .context("the test pods did not become Ready on the worker")?;
    let exec = |args: Vec<&'static str>| {
        let mut all = vec!["exec", "client", "--", "/usr/local/bin/test-client"];
        all.extend(args);
        async move { kubectl_as(admin, &all).await?.ok() }
    };
    let lookup = exec(vec!["lookup", "kubernetes.default.svc.cluster.local"]).await?;
    ensure!(
        lookup.stdout.trim() == "10.96.0.1",
        "kubernetes.default.svc.cluster.local resolved to {:?}",
        lookup.stdout.trim()
    );
    let version = exec(vec![
        "get",
        "https://kubernetes.default.svc.cluster.local/version",
        "--ca",
        "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        "--bearer-token-file",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ])
    .await?;
    ensure!(
        version.stdout.contains("\"gitVersion\""),
        "the tenant API through the Service: {}",
        version.stdout
    );
    kubectl_as(
        admin,
        &[
            "expose",
            "pod",
            "server",
            "--port",
            "80",
            "--target-port",
            "8080",
            "--name",
            "web",
        ],
    )
    .await?
    .ok()?;
    let body = exec(vec![
        "get",
        "http://web.default.svc.cluster.local/",
        "--retry-for",
        "30s",
    ])
    .await?;
    ensure!(
        body.stdout.contains("server"),
        "the ClusterIP Service answered {:?}",
        body.stdout
    );
    let logs = kubectl_as(admin, &["logs", "server"]).await?.ok()?;
    ensure!(
        logs.stdout.contains("serving on"),
        "kubectl logs of the pod: {:?}",
        logs.stdout
    );
    Ok(())
}
