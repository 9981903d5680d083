//! A node joins with the `<tcp>-join` Secret only: kubeadm's discovery (cluster-info signed for
//! the token, the CA pin), TLS bootstrap (a node client CSR auto-approved and issued, and nothing
//! else approved), and revoked or expired tokens refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hostplane_e2e::{Attempt, CmdOutput, TestEnv, install_crds, poll_until, random_token};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use super::Tcp;

/// A folder for this test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("e2e-join-{}", random_token()));
        std::fs::create_dir_all(&dir).context("creating a scratch folder")?;
        Ok(Self(dir))
    }

    fn write(&self, name: &str, text: &str) -> Result<String> {
        let path = self.0.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_string_lossy().into_owned())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn kubectl_as(kubeconfig: &str, args: &[&str]) -> Result<CmdOutput> {
    let mut all = vec!["--kubeconfig", kubeconfig, "--request-timeout=10s"];
    all.extend_from_slice(args);
    hostplane_e2e::kubectl(&all).await
}

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
async fn wait_refused(what: &str, kubeconfig: &str) -> Result<()> {
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
    let version = env
        .config
        .kubernetes_version
        .trim_start_matches('v')
        .to_owned();
    let tcp = Tcp::apply(&env, "j1", &version).await?;
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
    assert_bad_tokens_refused(&scratch, &tcp, &admin, &bootstrap, &cluster, token_id).await
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

/// A deleted (revoked) token is refused, and the operator puts it back once the TCP is
/// reconciled; an expired token is refused.
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
        .context("revoking the join token")?;
    wait_refused("the revoked join token is refused", bootstrap).await?;
    tcp.touch("token-revoked").await?;
    poll_until(
        "the operator restores the join token",
        Duration::from_secs(90),
        || async {
            Ok(match whoami(bootstrap).await? {
                Ok(user) => Attempt::Done(user),
                Err(e) => Attempt::NotYet(e),
            })
        },
    )
    .await?;

    // An expired token of the right shape, stored in the tenant as kubeadm would.
    let id = "exp123";
    let expired = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": id, "token-secret": "0123456789abcdef",
            "expiration": "2020-01-01T00:00:00Z",
            "usage-bootstrap-authentication": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        },
    });
    let file = scratch.write("expired-token", &expired.to_string())?;
    kubectl_as(admin, &["create", "-f", &file])
        .await?
        .ok()
        .context("creating an expired token")?;
    let expired_kubeconfig = scratch.write(
        "expired",
        &kubeconfig_with_user(cluster, &json!({"token": format!("{id}.0123456789abcdef")})),
    )?;
    let result = whoami(&expired_kubeconfig).await?;
    ensure!(
        result
            .as_ref()
            .is_err_and(|e| e.contains("Unauthorized") || e.contains("401")),
        "an expired bootstrap token was not refused as Unauthorized: {result:?}"
    );
    Ok(())
}
