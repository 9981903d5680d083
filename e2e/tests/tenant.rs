//! A TenantControlPlane becomes a working control plane: Ready, a Cluster-API-format kubeconfig
//! Secret that kube-rs and kubectl use as-is, the tenant's Secrets encrypted in its etcd, and
//! nothing left after deletion. Needs the operator installed from manifests/ in the cluster of
//! $KUBECONFIG (`make test` installs it on the local seed with e2e/install-operator).

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use hostplane_e2e::{
    Attempt, TestEnv, install_crds, kubectl, poll_until, random_token, tenant_client,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::Kubeconfig;

#[path = "tenant/backup_s3.rs"]
mod backup_s3;
#[path = "tenant/bad_input.rs"]
mod bad_input;
#[path = "tenant/ca_rotation.rs"]
mod ca_rotation;
#[path = "tenant/day2.rs"]
mod day2;
#[path = "tenant/gitops.rs"]
mod gitops;
#[path = "tenant/node_join.rs"]
mod node_join;
#[path = "common/operator.rs"]
mod operator;
#[path = "tenant/operator.rs"]
mod operator_tests;
#[path = "tenant/sa_keys.rs"]
mod sa_keys;
#[path = "tenant/upgrade.rs"]
mod upgrade;

/// Tests that restart, kill or scale the operator hold this for writing; checks that need its
/// leader to stay the same (its log, its endpoints) hold it for reading.
static OPERATOR: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// From apply to Ready: images are imported, so this is etcd + apiserver start and first sync,
/// for several tenants at once on a 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The spec line of a tenant whose size is no part of what a test checks: the suite's tests,
/// four at a time, share the seed's two CPUs, and `Standard` requests left pods Pending in CI.
const SMALL: &str = "  profile: Small\n";

/// A folder for a test's files (kubeconfigs, keys), removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("e2e-scratch-{}", random_token()));
        std::fs::create_dir_all(&dir).context("creating a scratch folder")?;
        Ok(Self(dir))
    }

    /// Writes `text` to `name` in the folder; returns its path.
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

/// kubectl with the kubeconfig file `kubeconfig` (a tenant's), each request at most 10 s.
async fn kubectl_as(kubeconfig: &str, args: &[&str]) -> Result<hostplane_e2e::CmdOutput> {
    let mut all = vec!["--kubeconfig", kubeconfig, "--request-timeout=10s"];
    all.extend_from_slice(args);
    kubectl(&all).await
}

/// The messages of the Events in the test's namespace that match a field `selector`.
async fn event_messages(env: &TestEnv, selector: &str) -> Result<String> {
    Ok(env
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            selector,
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .await?
        .ok()?
        .stdout)
}

/// Merges `spec` (a JSON object) into the spec of tcp/`name`.
/// `kubectl annotate --overwrite tcp/<tcp> <key>=<value>`.
async fn annotate(env: &TestEnv, tcp: &str, key: &str, value: &str) -> Result<()> {
    env.kubectl(&[
        "annotate",
        "--overwrite",
        &format!("tcp/{tcp}"),
        &format!("{key}={value}"),
    ])
    .await?
    .ok()
    .map(|_| ())
}

async fn patch_spec(env: &TestEnv, name: &str, spec: &str) -> Result<()> {
    env.kubectl(&[
        "patch",
        &format!("tcp/{name}"),
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{spec}}}"#),
    ])
    .await?
    .ok()
    .with_context(|| format!("patching the spec of tcp/{name} with {spec}"))?;
    Ok(())
}

struct Tcp<'a> {
    env: &'a TestEnv,
    name: String,
}

impl<'a> Tcp<'a> {
    /// Applies a minimal TCP of the suite's Kubernetes version.
    async fn apply(env: &'a TestEnv, name: &str) -> Result<Self> {
        Self::apply_with(env, name, "").await
    }

    /// Applies a TCP of the suite's Kubernetes version with `spec` (more YAML lines of the spec,
    /// indented by two spaces).
    async fn apply_with(env: &'a TestEnv, name: &str, spec: &str) -> Result<Self> {
        let version = env.config.kubernetes_version.trim_start_matches('v');
        Self::apply_version(env, name, version, spec).await
    }

    /// Applies a TCP of Kubernetes `version` with `spec` (as [`Tcp::apply_with`]).
    async fn apply_version(
        env: &'a TestEnv,
        name: &str,
        version: &str,
        spec: &str,
    ) -> Result<Self> {
        let manifest = format!(
            "apiVersion: hostplane.dev/v1alpha1\nkind: TenantControlPlane\nmetadata:\n  name: {name}\nspec:\n  version: \"{version}\"\n{spec}"
        );
        let path = std::env::temp_dir().join(format!("tcp-{}.yaml", random_token()));
        std::fs::write(&path, manifest).context("writing the manifest")?;
        let out = env.kubectl(&["apply", "-f", &path.to_string_lossy()]).await;
        let _ = std::fs::remove_file(&path);
        out?.ok()
            .context("kubectl apply of the TenantControlPlane")?;
        Ok(Self {
            env,
            name: name.to_owned(),
        })
    }

    /// Waits (up to READY_TIMEOUT) for the Ready condition, then `kubectl wait
    /// --for=condition=Ready tcp/<name>` as a user would; on failure, the status and pods. (One
    /// kubectl call must stay under the helpers' command limit, so the long wait is a poll.)
    async fn wait_ready(&self) -> Result<()> {
        let tcp = format!("tcp/{}", self.name);
        let ready = poll_until(&format!("{tcp} is Ready"), READY_TIMEOUT, || async {
            let out = self
                .env
                .kubectl(&[
                    "get",
                    &tcp,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .await?;
            Ok(if out.stdout.trim() == "True" {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("Ready={:?}", out.stdout.trim()))
            })
        })
        .await;
        let waited = match ready {
            Ok(()) => {
                self.env
                    .kubectl(&["wait", "--for=condition=Ready", &tcp, "--timeout=30s"])
                    .await?
            }
            Err(e) => {
                let status = self
                    .env
                    .kubectl(&["get", &tcp, "-o", "jsonpath={.status}"])
                    .await?;
                let pods = self.env.kubectl(&["get", "pods", "-o", "wide"]).await?;
                bail!(
                    "{e}\nstatus: {}\npods:\n{}\n{}",
                    status.stdout,
                    pods.stdout,
                    self.env.diagnostics().await
                );
            }
        };
        ensure!(
            waited.success(),
            "kubectl wait --for=condition=Ready {tcp} failed: {}",
            waited.stderr.trim()
        );
        Ok(())
    }

    /// Changes an annotation, which makes the operator reconcile the TCP.
    async fn touch(&self, value: &str) -> Result<()> {
        self.env
            .kubectl(&[
                "annotate",
                "--overwrite",
                &format!("tcp/{}", self.name),
                &format!("e2e.hostplane.dev/touched={value}"),
            ])
            .await?
            .ok()
            .context("annotating the TCP")?;
        Ok(())
    }

    async fn resource_version(&self) -> Result<String> {
        Ok(self
            .env
            .kubectl(&[
                "get",
                &format!("tcp/{}", self.name),
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ])
            .await?
            .ok()?
            .stdout)
    }

    /// (status, reason, message) of condition `type_` (empty strings while it is absent).
    async fn condition(&self, type_: &str) -> Result<(String, String, String)> {
        let field = |f: &str| format!("{{.status.conditions[?(@.type==\"{type_}\")].{f}}}");
        let path = format!(
            "jsonpath={}|{}|{}",
            field("status"),
            field("reason"),
            field("message")
        );
        let out = self
            .env
            .kubectl(&["get", &format!("tcp/{}", self.name), "-o", &path])
            .await?
            .ok()?
            .stdout;
        let mut parts = out.splitn(3, '|').map(str::to_owned);
        Ok((
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        ))
    }

    /// (reason, message) of the Ready condition.
    async fn ready_condition(&self) -> Result<(String, String)> {
        let (_, reason, message) = self.condition("Ready").await?;
        Ok((reason.trim().to_owned(), message.trim().to_owned()))
    }

    /// The kubeconfig Secret in the Cluster API format, checked, as YAML.
    async fn kubeconfig(&self) -> Result<String> {
        let name = format!("{}-kubeconfig", self.name);
        let secret = self
            .env
            .api::<Secret>()
            .get(&name)
            .await
            .with_context(|| format!("reading Secret {name}"))?;
        ensure!(
            secret.type_.as_deref() == Some("cluster.x-k8s.io/secret"),
            "Secret {name} has type {:?}, want cluster.x-k8s.io/secret",
            secret.type_
        );
        let label = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("cluster.x-k8s.io/cluster-name"));
        ensure!(
            label == Some(&self.name),
            "Secret {name} has label cluster.x-k8s.io/cluster-name={label:?}, want {}",
            self.name
        );
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get("value"))
            .with_context(|| format!("Secret {name} has no key `value`"))?;
        String::from_utf8(value.0.clone()).context("the kubeconfig is not UTF-8")
    }
}

#[tokio::test]
async fn minimal_tcp_becomes_ready_and_its_kubeconfig_works() -> Result<()> {
    install_crds().await?;
    let env = TestEnv::new("tcp-minimal").await?;
    // A second tenant in another namespace, for the isolation checks below.
    let other_env = TestEnv::new("tcp-other").await?;
    let tcp = Tcp::apply(&env, "t1").await?;
    let other = Tcp::apply_with(&other_env, "t2", SMALL).await?;
    tcp.wait_ready().await?;
    other.wait_ready().await?;

    // kube-rs with the Secret as it is.
    let kubeconfig = tcp.kubeconfig().await?;
    let tenant = tenant_client(&kubeconfig).await?;
    let info = tenant
        .apiserver_version()
        .await
        .context("GET /version of the tenant")?;
    ensure!(
        info.git_version == env.config.kubernetes_version,
        "the tenant reports {}, want {}",
        info.git_version,
        env.config.kubernetes_version
    );

    assert_cluster_admin_not_system_masters(&kubeconfig).await?;
    let (ns, plaintext) = assert_secrets_encrypted_in_etcd(&env, &tenant, &tcp.name).await?;
    assert_data_survives_etcd_pod_deletion(&env, &tenant, &tcp.name, &ns, &plaintext).await?;
    assert_credentials_refused_by_the_other(&kubeconfig, &other.kubeconfig().await?).await?;
    assert_credentials_refused_by_the_other(&other.kubeconfig().await?, &kubeconfig).await?;
    assert_etcd_refuses_foreign_clients(&env, "t1", other_env.namespace(), "t2").await?;
    assert_network_policies(&env, "t1").await?;
    // The etcd pod deletion above makes the tenant NotReady for a while (the controllers may
    // back off); the plugin and metrics checks want it Ready again.
    tcp.wait_ready().await?;
    match std::env::var("E2E_PLUGIN_BINARY") {
        Ok(plugin) => assert_plugin(&plugin, &env, &tcp).await?,
        Err(_) => hostplane_e2e::skip(
            "minimal_tcp_becomes_ready_and_its_kubeconfig_works (its kubectl plugin part)",
            "E2E_PLUGIN_BINARY is not set (make test builds it)",
        )?,
    }
    if env_flag("E2E_LOCAL_SEED") {
        assert_operator_metrics(&tcp).await?;
    } else {
        hostplane_e2e::skip(
            "minimal_tcp_becomes_ready_and_its_kubeconfig_works (its metrics part)",
            "reads the operator pod's endpoints at its pod IP, routed only on the local seed's host",
        )?;
    }

    // Deleting the TCP (confirmed: deletion protection) removes everything it created (owner
    // references; PVCs by the StatefulSet's retention policy).
    env.kubectl(&["annotate", "tcp/t1", "hostplane.dev/confirm-deletion=true"])
        .await?
        .ok()?;
    env.kubectl(&["delete", "tcp", "t1", "--wait=true", "--timeout=50s"])
        .await?
        .ok()?;
    nothing_left(&env, "t1").await
}

/// What a TenantControlPlane makes, by kind, for `kubectl get`.
const CHILD_KINDS: &str = "secrets,services,statefulsets,deployments,poddisruptionbudgets,networkpolicies,persistentvolumeclaims,jobs,pods";

/// The objects of tcp/`tcp` left in its namespace, as `kind/name`.
async fn left_of(env: &TestEnv, tcp: &str) -> Result<Vec<String>> {
    let selector = format!("hostplane.dev/tenant={tcp}");
    let out = env
        .kubectl(&["get", CHILD_KINDS, "-l", &selector, "-o", "name"])
        .await?
        .ok()?;
    Ok(out.stdout.split_whitespace().map(str::to_owned).collect())
}

/// Waits (2 minutes) until nothing of the deleted tcp/`tcp` is left.
async fn nothing_left(env: &TestEnv, tcp: &str) -> Result<()> {
    poll_until(
        &format!("nothing of tcp/{tcp} is left"),
        Duration::from_secs(120),
        || async {
            let left = left_of(env, tcp).await?;
            Ok(if left.is_empty() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("still there: {}", left.join(", ")))
            })
        },
    )
    .await
}

async fn assert_cluster_admin_not_system_masters(kubeconfig: &str) -> Result<()> {
    // kubectl with the same file: the user is a cluster admin through a group, not system:masters.
    let path = std::env::temp_dir().join(format!("kubeconfig-{}", random_token()));
    std::fs::write(&path, kubeconfig).context("writing the kubeconfig")?;
    let file = path.to_string_lossy().into_owned();
    let whoami = kubectl(&["--kubeconfig", &file, "auth", "whoami", "-o", "json"]).await;
    let can_i = kubectl(&["--kubeconfig", &file, "auth", "can-i", "*", "*"]).await;
    let _ = std::fs::remove_file(&path);
    let whoami = whoami?.ok()?.stdout;
    ensure!(
        whoami.contains("kubeadm:cluster-admins") && !whoami.contains("system:masters"),
        "the kubeconfig's user should be in kubeadm:cluster-admins and not in system:masters: {whoami}"
    );
    ensure!(
        can_i?.stdout.trim() == "yes",
        "the kubeconfig's user is not a cluster admin"
    );

    Ok(())
}

/// Creates a Secret in the tenant and checks its bytes in etcd; returns (namespace, value).
async fn assert_secrets_encrypted_in_etcd(
    env: &TestEnv,
    tenant: &Client,
    tcp: &str,
) -> Result<(String, String)> {
    // A Secret created in the tenant is encrypted in its etcd.
    let ns_name = format!("e2e-{}", &random_token()[4..12]);
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns_name}}))?;
    Api::<Namespace>::all(tenant.clone())
        .create(&PostParams::default(), &ns)
        .await
        .context("creating a namespace in the tenant")?;
    let plaintext = random_token();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe", "namespace": ns_name},
        "stringData": {"v": plaintext},
    }))?;
    Api::<Secret>::namespaced(tenant.clone(), &ns_name)
        .create(&PostParams::default(), &secret)
        .await
        .context("creating a Secret in the tenant")?;
    let raw = env
        .kubectl(&[
            "exec",
            &format!("{tcp}-etcd-0"),
            "-c",
            "etcd",
            "--",
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/etcd/pki/server/ca.crt",
            "--cert=/etc/etcd/pki/server/tls.crt",
            "--key=/etc/etcd/pki/server/tls.key",
            "get",
            &format!("/registry/secrets/{ns_name}/probe"),
            "--print-value-only",
        ])
        .await?
        .ok()
        .context("reading the Secret's bytes from the tenant's etcd")?
        .stdout;
    ensure!(
        !raw.is_empty(),
        "the Secret is not in the tenant's etcd under /registry/secrets"
    );
    ensure!(
        raw.starts_with("k8s:enc:") && !raw.contains(&plaintext),
        "the Secret is stored unencrypted in etcd (first bytes {:?})",
        raw.chars().take(24).collect::<String>()
    );

    Ok((ns_name, plaintext))
}

/// `kind/name resourceVersion` of every object of tcp/`name` and of the TCP itself.
async fn resource_versions(env: &TestEnv, name: &str) -> Result<String> {
    let template =
        "{range .items[*]}{.kind}/{.metadata.name} {.metadata.resourceVersion}{\"\\n\"}{end}";
    let children = env
        .kubectl(&[
            "get",
            "secrets,services,statefulsets,deployments,poddisruptionbudgets,persistentvolumeclaims",
            "-l",
            &format!("hostplane.dev/tenant={name}"),
            "-o",
            &format!("jsonpath={template}"),
        ])
        .await?
        .ok()?
        .stdout;
    let tcp = env
        .kubectl(&[
            "get",
            "tcp",
            name,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .await?
        .ok()?
        .stdout;
    let mut lines: Vec<&str> = children.lines().collect();
    lines.sort_unstable();
    Ok(format!(
        "TenantControlPlane/{name} {tcp}\n{}",
        lines.join("\n")
    ))
}

async fn ca_of(env: &TestEnv, tcp: &str) -> Result<String> {
    Ok(env
        .kubectl(&[
            "get",
            "secret",
            &format!("{tcp}-ca"),
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ])
        .await?
        .ok()?
        .stdout)
}

#[tokio::test]
async fn operator_restarts_keep_the_ca_and_a_ready_tenant_sees_no_write() -> Result<()> {
    if !env_flag("E2E_LOCAL_SEED") {
        return hostplane_e2e::skip(
            "operator_restarts_keep_the_ca_and_a_ready_tenant_sees_no_write",
            "restarts the operator, which only the local seed runs (E2E_LOCAL_SEED=1)",
        );
    }
    let _operator = OPERATOR.write().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-restart").await?;
    let tcp = Tcp::apply(&env, "r1").await?;

    // Mid-provisioning: as soon as the CA exists, restart the operator.
    let ca = poll_until(
        "the CA Secret of tcp/r1 exists",
        Duration::from_secs(60),
        || async {
            let ca = ca_of(&env, "r1").await.unwrap_or_default();
            Ok(if ca.is_empty() {
                Attempt::NotYet("no Secret r1-ca yet".into())
            } else {
                Attempt::Done(ca)
            })
        },
    )
    .await?;
    operator::restart().await?;
    tcp.wait_ready().await?;
    ensure!(
        ca_of(&env, "r1").await? == ca,
        "the CA of tcp/r1 changed across an operator restart"
    );

    // Ready and unchanged: a restart (a full resync of every object) writes nothing.
    let before = resource_versions(&env, "r1").await?;
    operator::restart().await?;
    tokio::time::sleep(Duration::from_secs(15)).await; // the resync after a restart, not an assertion
    let after = resource_versions(&env, "r1").await?;
    ensure!(
        before == after,
        "an operator restart wrote to a Ready, unchanged tenant:\nbefore:\n{before}\nafter:\n{after}"
    );
    ensure!(
        before.lines().count() > 20,
        "too few objects compared:\n{before}"
    );

    assert_lost_ca_is_reported_not_replaced(&env, &tcp, &ca).await
}

/// Deleting the CA Secret of a Ready tenant does not get a new CA: the TCP says why and what to
/// do (Ready=False, RootsUnavailable), then waits for a change without retrying or writing.
/// Restoring the Secret and touching the TCP brings back the same CA and Ready.
async fn assert_lost_ca_is_reported_not_replaced(
    env: &TestEnv,
    tcp: &Tcp<'_>,
    ca: &str,
) -> Result<()> {
    let secrets = env.api::<Secret>();
    let name = format!("{}-ca", tcp.name);
    let mut saved = secrets.get(&name).await.context("reading the CA Secret")?;
    saved.metadata.resource_version = None;
    saved.metadata.uid = None;
    saved.metadata.creation_timestamp = None;
    saved.metadata.managed_fields = None;
    secrets
        .delete(&name, &DeleteParams::default())
        .await
        .context("deleting the CA Secret")?;
    // The operator does not watch its Secrets; any change of the TCP is a reconcile.
    tcp.touch("ca-deleted").await?;
    let message = poll_until(
        &format!("tcp/{} reports RootsUnavailable", tcp.name),
        Duration::from_secs(60),
        || async {
            let (reason, message) = tcp.ready_condition().await?;
            Ok(if reason == "RootsUnavailable" {
                Attempt::Done(message)
            } else {
                Attempt::NotYet(format!("Ready reason {reason:?}: {message}"))
            })
        },
    )
    .await?;
    ensure!(
        message.contains(&name)
            && message.contains("Restore the Secret")
            && message.contains(&format!("{ACCEPT_NEW_ROOTS}={name}")),
        "the RootsUnavailable message does not name the Secret and both ways out: {message}"
    );

    // It waits for a change: no new CA, no retries (log lines about this namespace), no writes.
    let (rv_before, log_before) = (
        tcp.resource_version().await?,
        operator_log_lines(env.ns.name()).await?,
    );
    tokio::time::sleep(Duration::from_secs(20)).await; // a window for retries, not an assertion
    let (rv_after, log_after) = (
        tcp.resource_version().await?,
        operator_log_lines(env.ns.name()).await?,
    );
    ensure!(
        secrets.get_opt(&name).await?.is_none(),
        "the operator created a new CA Secret {name} on its own"
    );
    ensure!(
        rv_before == rv_after,
        "tcp/{} was written while it waited ({rv_before} -> {rv_after})",
        tcp.name
    );
    ensure!(
        log_after == log_before,
        "the operator kept reconciling tcp/{} while it waited for a change ({} new log lines)",
        tcp.name,
        log_after.saturating_sub(log_before)
    );

    // Restored from the saved copy (a backup), the same CA is used and the tenant is Ready.
    secrets
        .create(&PostParams::default(), &saved)
        .await
        .context("restoring the CA Secret")?;
    tcp.touch("ca-restored").await?;
    tcp.wait_ready().await?;
    ensure!(
        ca_of(env, &tcp.name).await? == ca,
        "the CA changed after the restore"
    );
    assert_new_root_accepted(env, tcp).await
}

const ACCEPT_NEW_ROOTS: &str = "hostplane.dev/accept-new-roots";

/// A lost front-proxy CA, replaced on purpose: the annotation names it, the operator makes a new
/// one (a different certificate), says so in an Event and the tenant is Ready again.
async fn assert_new_root_accepted(env: &TestEnv, tcp: &Tcp<'_>) -> Result<()> {
    let name = format!("{}-front-proxy-ca", tcp.name);
    let secrets = env.api::<Secret>();
    let old = secrets.get(&name).await?.data;
    secrets
        .delete(&name, &DeleteParams::default())
        .await
        .context("deleting the front-proxy CA Secret")?;
    tcp.touch("front-proxy-ca-deleted").await?;
    poll_until(
        &format!("tcp/{} reports RootsUnavailable for {name}", tcp.name),
        Duration::from_secs(60),
        || async {
            let (reason, message) = tcp.ready_condition().await?;
            Ok(if reason == "RootsUnavailable" && message.contains(&name) {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("Ready reason {reason:?}: {message}"))
            })
        },
    )
    .await?;
    env.kubectl(&[
        "annotate",
        &format!("tcp/{}", tcp.name),
        &format!("{ACCEPT_NEW_ROOTS}={name}"),
    ])
    .await?
    .ok()?;
    tcp.wait_ready().await?;
    let new = secrets.get(&name).await?.data;
    ensure!(
        new.is_some() && new != old,
        "no new front-proxy CA after accepting one"
    );
    let events = event_messages(env, "reason=RootReplaced").await?;
    ensure!(
        events.contains(&name),
        "no RootReplaced Event names {name}: {events:?}"
    );
    env.kubectl(&[
        "annotate",
        &format!("tcp/{}", tcp.name),
        &format!("{ACCEPT_NEW_ROOTS}-"),
    ])
    .await?
    .ok()?;
    Ok(())
}

/// The value of the sample `name` (the whole series, labels included) in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The operator's endpoints: healthy, ready, and metrics that count reconciles and report this
/// tenant's phase and certificate expiry (its leaves live a year).
async fn assert_operator_metrics(tcp: &Tcp<'_>) -> Result<()> {
    let _operator = OPERATOR.read().await;
    let http = hostplane_e2e::http_client()?;
    // The leader answers /readyz 200 (a restart by another test may have just ended).
    let leader = operator::leader(&[], Duration::from_secs(60)).await?;
    hostplane_e2e::http_get_until_ok(&leader.url("/healthz"), Duration::from_secs(30)).await?;
    let scrape = || async {
        http.get(leader.url("/metrics"))
            .send()
            .await?
            .text()
            .await
            .context("reading /metrics")
    };
    let text = scrape().await?;
    let reconciles = sample(&text, "hostplane_reconciles_total")
        .with_context(|| format!("no hostplane_reconciles_total in:\n{text}"))?;
    let ready = sample(&text, r#"hostplane_tenantcontrolplanes{phase="Ready"}"#).unwrap_or(0.0);
    ensure!(ready >= 1.0, "no Ready TenantControlPlane counted:\n{text}");
    let expiry = sample(
        &text,
        &format!(
            r#"hostplane_tenant_certificate_expiry_seconds{{namespace="{}",name="{}"}}"#,
            tcp.env.namespace(),
            tcp.name
        ),
    )
    .with_context(|| format!("no certificate expiry for tcp/{}:\n{text}", tcp.name))?;
    let days = expiry / 86_400.0;
    ensure!(
        (360.0..=366.0).contains(&days),
        "tcp/{}'s first certificate expires in {days:.1} days, want about 365",
        tcp.name
    );
    tcp.touch("metrics").await?;
    poll_until(
        "hostplane_reconciles_total grows after a change",
        Duration::from_secs(30),
        || async {
            let now = sample(&scrape().await?, "hostplane_reconciles_total").unwrap_or(0.0);
            Ok(if now > reconciles {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("{now} <= {reconciles}"))
            })
        },
    )
    .await
}

/// Lines of the leading operator's log that mention `namespace`.
async fn operator_log_lines(namespace: &str) -> Result<usize> {
    operator::leader(&[], Duration::from_secs(60))
        .await?
        .log_lines(namespace)
        .await
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// Deletes the tenant's etcd pod; once it is back the tenant serves the same Secret again.
async fn assert_data_survives_etcd_pod_deletion(
    env: &TestEnv,
    tenant: &Client,
    tcp: &str,
    ns: &str,
    plaintext: &str,
) -> Result<()> {
    let pod = format!("{tcp}-etcd-0");
    env.kubectl(&["delete", "pod", &pod, "--wait=true", "--timeout=50s"])
        .await?
        .ok()?;
    let secrets = Api::<Secret>::namespaced(tenant.clone(), ns);
    poll_until(
        "the tenant serves its Secret again after its etcd pod was deleted",
        Duration::from_secs(180),
        || async {
            Ok(match secrets.get("probe").await {
                Ok(s) => {
                    let v = s
                        .data
                        .as_ref()
                        .and_then(|d| d.get("v"))
                        .map(|b| b.0.clone());
                    ensure!(
                        v.as_deref() == Some(plaintext.as_bytes()),
                        "the Secret came back with other data"
                    );
                    Attempt::Done(())
                }
                Err(e) => Attempt::NotYet(e.to_string()),
            })
        },
    )
    .await
}

/// `own`'s client certificate, presented to the other tenant (trusting the other's CA, so the TLS
/// handshake itself succeeds), is refused as Unauthorized. Checked with kubectl, as a user would:
/// kube-rs (rustls) fails this handshake at connect, which would prove nothing about the tenant.
async fn assert_credentials_refused_by_the_other(own: &str, other: &str) -> Result<()> {
    let own = Kubeconfig::from_yaml(own)?;
    let mut mixed = Kubeconfig::from_yaml(other)?;
    mixed.auth_infos.clone_from(&own.auth_infos);
    if let Some(ctx) = mixed.contexts.first_mut().and_then(|c| c.context.as_mut()) {
        ctx.user = own.auth_infos.first().map(|a| a.name.clone());
    }
    let path = std::env::temp_dir().join(format!("mixed-{}", random_token()));
    std::fs::write(&path, serde_json::to_vec(&mixed)?).context("writing the mixed kubeconfig")?;
    let file = path.to_string_lossy().into_owned();
    // A connection error is transient (a busy machine); an accepted request fails at once.
    let result = poll_until(
        "the other tenant answers the foreign credentials",
        Duration::from_secs(60),
        || async {
            let out = kubectl(&["--kubeconfig", &file, "get", "namespaces"]).await?;
            // kubectl words a 401 either way, depending on the request.
            let unauthorized = out.stderr.contains("Unauthorized")
                || out
                    .stderr
                    .contains("the server has asked for the client to provide credentials");
            ensure!(
                !out.success(),
                "a tenant accepted the admin credentials of another tenant: {}",
                out.stdout
            );
            Ok(if unauthorized {
                Attempt::Done(())
            } else {
                Attempt::NotYet(out.stderr.lines().last().unwrap_or_default().to_owned())
            })
        },
    )
    .await;
    let _ = std::fs::remove_file(&path);
    result
}

/// `kubectl hostplane` against a Ready tenant: its kubeconfig works, `join` prints the join
/// Secret's command, `status` shows the phase, conditions and certificates, `create` prints a
/// manifest; a missing TCP is an error that says so.
async fn assert_plugin(plugin: &str, env: &TestEnv, tcp: &Tcp<'_>) -> Result<()> {
    let ns = env.namespace();
    let run = |args: Vec<String>| async move {
        let mut all = vec!["-n".to_owned(), ns.to_owned()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        hostplane_e2e::run_command(plugin, &refs).await
    };
    let file = std::env::temp_dir().join(format!("plugin-{}.kubeconfig", random_token()));
    let path = file.to_string_lossy().into_owned();
    run(vec![
        "kubeconfig".into(),
        tcp.name.clone(),
        "-o".into(),
        path.clone(),
    ])
    .await?
    .ok()
    .context("kubectl hostplane kubeconfig")?;
    let namespaces =
        hostplane_e2e::kubectl(&["--kubeconfig", &path, "get", "namespaces", "-o", "name"]).await;
    let _ = std::fs::remove_file(&file);
    ensure!(
        namespaces?.ok()?.stdout.contains("namespace/kube-system"),
        "the plugin's kubeconfig does not reach the tenant"
    );

    let join = run(vec!["join".into(), tcp.name.clone()]).await?.ok()?;
    let secret = env
        .api::<Secret>()
        .get(&format!("{}-join", tcp.name))
        .await?;
    let expected = secret
        .data
        .as_ref()
        .and_then(|d| d.get("join-command"))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .context("no join-command in the join Secret")?;
    ensure!(
        join.stdout.trim() == expected,
        "kubectl hostplane join printed {:?}",
        join.stdout
    );

    let status = run(vec!["status".into(), tcp.name.clone()]).await?.ok()?;
    for want in [
        "phase Ready",
        "APIServerReady",
        &format!("{}-apiserver-cert", tcp.name),
    ] {
        ensure!(
            status.stdout.contains(want),
            "kubectl hostplane status lacks {want:?}:\n{}",
            status.stdout
        );
    }
    let missing = run(vec!["status".into(), "no-such-tcp".into()]).await?;
    ensure!(
        !missing.success() && missing.stderr.contains("not found"),
        "a missing TCP: {:?}",
        missing.stderr
    );
    let manifest = run(vec![
        "create".into(),
        "p1".into(),
        "--version".into(),
        "1.36.3".into(),
    ])
    .await?
    .ok()?;
    ensure!(
        manifest.stdout.contains("kind: TenantControlPlane")
            && manifest.stdout.contains("version: 1.36.3"),
        "kubectl hostplane create printed {:?}",
        manifest.stdout
    );
    Ok(())
}

/// `hostplane.dev/paused: "true"` stops all reconciliation: the TCP says so in a Paused
/// condition, and a control-plane Deployment scaled to 0 by hand stays at 0 (the operator's
/// watch of it still fires, the operator does nothing). Removing the annotation brings the
/// replica back and the condition goes.
#[tokio::test]
async fn a_paused_tenant_is_left_alone_until_unpaused() -> Result<()> {
    let _operator = OPERATOR.read().await;
    install_crds().await?;
    let env = TestEnv::new("tcp-paused").await?;
    let tcp = Tcp::apply(&env, "p1").await?;
    tcp.wait_ready().await?;
    let object = "tcp/p1";
    env.kubectl(&["annotate", object, "hostplane.dev/paused=true"])
        .await?
        .ok()
        .context("annotating the TCP paused")?;
    let paused = "jsonpath={.status.conditions[?(@.type==\"Paused\")].status}";
    poll_until(
        "tcp/p1 says it is paused",
        Duration::from_secs(60),
        || async {
            let out = env.kubectl(&["get", object, "-o", paused]).await?.ok()?;
            Ok(if out.stdout.trim() == "True" {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("Paused={:?}", out.stdout.trim()))
            })
        },
    )
    .await?;
    let events = env
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=Paused",
            "-o",
            "name",
        ])
        .await?
        .ok()?;
    ensure!(
        !events.stdout.trim().is_empty(),
        "no Paused Event for tcp/p1"
    );

    env.kubectl(&["scale", "deployment/p1-scheduler", "--replicas=0"])
        .await?
        .ok()
        .context("scaling the scheduler to 0 by hand")?;
    let replicas = || async {
        let out = env
            .kubectl(&[
                "get",
                "deployment/p1-scheduler",
                "-o",
                "jsonpath={.spec.replicas}",
            ])
            .await?
            .ok()?;
        Ok::<_, anyhow::Error>(out.stdout.trim().to_owned())
    };
    // The Deployment's change reaches the operator within a second or two (its watch); unpaused,
    // it would re-apply the replica count at once (the unpause below shows it does).
    tokio::time::sleep(Duration::from_secs(15)).await;
    ensure!(
        replicas().await? == "0",
        "the operator changed the scheduler of a paused TCP (replicas {})",
        replicas().await?
    );

    env.kubectl(&["annotate", object, "hostplane.dev/paused-"])
        .await?
        .ok()
        .context("removing the paused annotation")?;
    poll_until(
        "tcp/p1's scheduler is back at 1 replica and the Paused condition gone",
        Duration::from_secs(60),
        || async {
            let r = replicas().await?;
            let p = env.kubectl(&["get", object, "-o", paused]).await?.ok()?;
            Ok(if r == "1" && p.stdout.trim().is_empty() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(format!("replicas {r}, Paused={:?}", p.stdout.trim()))
            })
        },
    )
    .await?;
    tcp.wait_ready().await
}

/// Tenant `own`'s etcd accepts its API server's client certificate and refuses a client without
/// one; tenant `other`'s etcd refuses `own`'s client certificate. Checked from a pod with etcdctl
/// (etcd's own image; any NetworkPolicy-enforcing CNI aside, the pod network reaches every etcd):
/// one container per client, each container's exit code and output (its termination message)
/// read back. The accepted client proves the path works; a refused one must be in the refusing
/// etcd's log as a connection from the pod rejected for its certificate (etcdctl itself only
/// sees a closed connection), so an unreachable etcd does not pass for a refusing one.
async fn assert_etcd_refuses_foreign_clients(
    env: &TestEnv,
    own: &str,
    other_namespace: &str,
    other: &str,
) -> Result<()> {
    let ns = env.namespace();
    let endpoint = |tcp: &str, ns: &str| {
        format!("--endpoints=https://{tcp}-etcd-0.{tcp}-etcd.{ns}.svc.cluster.local:2379")
    };
    let pki = "/pki";
    let container = |name: &str, args: Vec<String>| {
        let mut all = vec![
            "--dial-timeout=5s".to_owned(),
            "--command-timeout=15s".to_owned(),
        ];
        all.extend(args);
        all.extend(["get", "/registry/", "--prefix", "--keys-only", "--limit=1"].map(String::from));
        serde_json::json!({
            "name": name,
            "image": env.config.etcd_image,
            "imagePullPolicy": env.config.image_pull_policy,
            "command": ["etcdctl"],
            "args": all,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "pki", "mountPath": pki, "readOnly": true}],
        })
    };
    let (ca, cert, key) = (
        format!("--cacert={pki}/ca.crt"),
        format!("--cert={pki}/tls.crt"),
        format!("--key={pki}/tls.key"),
    );
    let pod_name = format!("etcd-clients-{}", random_token().to_lowercase());
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": pod_name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                container("own-cert", vec![endpoint(own, ns), ca.clone(), cert.clone(), key.clone()]),
                container("no-cert", vec![endpoint(own, ns), ca]),
                container("own-cert-at-other", vec![endpoint(other, other_namespace),
                    "--insecure-skip-tls-verify".into(), cert, key]),
            ],
            "volumes": [{"name": "pki", "secret": {"secretName": format!("{own}-apiserver-etcd-client")}}],
        },
    }))?;
    let (statuses, pod_ip) = run_to_completion(env, &pod, 3).await?;
    let pods = env.api::<k8s_openapi::api::core::v1::Pod>();
    for (name, code, message) in &statuses {
        // A container that succeeded has no termination message: its output is its log.
        let message = if *code == 0 {
            env.kubectl(&["logs", &pod_name, "-c", name])
                .await?
                .ok()?
                .stdout
        } else {
            message.clone()
        };
        let message = message.trim();
        println!(
            "etcdctl {name}: exit {code}: {}",
            message.lines().last().unwrap_or_default()
        );
        if name == "own-cert" {
            ensure!(
                *code == 0 && message.contains("/registry/"),
                "tenant {own}'s etcd did not serve its own API server's client certificate (exit {code}): {message}"
            );
        } else {
            ensure!(
                *code != 0 && !message.contains("/registry/"),
                "etcd served the client {name} (exit {code}): {message}"
            );
        }
    }
    let _ = pods.delete(&pod_name, &DeleteParams::default()).await;
    // Why: each refusing etcd logged the pod's connection as rejected for its certificate.
    for (tcp, namespace, why) in [
        (own, ns, "client didn't provide a certificate"),
        (
            other,
            other_namespace,
            "certificate signed by unknown authority",
        ),
    ] {
        rejection_logged(tcp, namespace, &pod_ip, why).await?;
    }
    Ok(())
}

/// The tenant's NetworkPolicies are there (their effect needs an enforcing CNI:
/// docs/reliability.md; what they allow is the unit test in operator/src/build/tests.rs).
async fn assert_network_policies(env: &TestEnv, tcp: &str) -> Result<()> {
    let names = env
        .kubectl(&[
            "get",
            "networkpolicies",
            "-l",
            &format!("hostplane.dev/tenant={tcp}"),
            "-o",
            "name",
        ])
        .await?
        .ok()?
        .stdout;
    let mut names: Vec<&str> = names.split_whitespace().collect();
    names.sort_unstable();
    let want: Vec<String> = ["apiserver", "controller-manager", "etcd", "scheduler"]
        .iter()
        .map(|c| format!("networkpolicy.networking.k8s.io/{tcp}-{c}"))
        .collect();
    ensure!(
        names == want,
        "the NetworkPolicies of tcp/{tcp}: {names:?}, want {want:?}"
    );
    Ok(())
}

/// Creates `pod` and waits (2 minutes) until its `containers` containers have terminated: each
/// one's (name, exit code, termination message), and the pod's IP.
async fn run_to_completion(
    env: &TestEnv,
    pod: &k8s_openapi::api::core::v1::Pod,
    containers: usize,
) -> Result<(Vec<(String, i32, String)>, String)> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let pods = env.api::<k8s_openapi::api::core::v1::Pod>();
    pods.create(&PostParams::default(), pod)
        .await
        .with_context(|| format!("creating pod {pod_name}"))?;
    poll_until(
        &format!("every container of pod {pod_name} finished"),
        Duration::from_secs(120),
        || async {
            let pod = pods.get(&pod_name).await?;
            let statuses = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            let done: Vec<(String, i32, String)> = statuses
                .iter()
                .filter_map(|c| {
                    let t = c.state.as_ref()?.terminated.as_ref()?;
                    Some((
                        c.name.clone(),
                        t.exit_code,
                        t.message.clone().unwrap_or_default(),
                    ))
                })
                .collect();
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            Ok(if let (true, Some(ip)) = (done.len() == containers, ip) {
                Attempt::Done((done, ip))
            } else {
                Attempt::NotYet(format!(
                    "{} of {containers} containers finished",
                    done.len()
                ))
            })
        },
    )
    .await
}

/// Waits (30 s) until `tcp`'s first etcd member has logged a connection from `pod_ip` rejected
/// for `why`.
async fn rejection_logged(tcp: &str, namespace: &str, pod_ip: &str, why: &str) -> Result<()> {
    let from = format!("\"remote-addr\":\"{pod_ip}:");
    poll_until(
        &format!("{tcp}-etcd-0 logs the connection from {pod_ip} as rejected: {why}"),
        Duration::from_secs(30),
        || async {
            let logs = kubectl(&["-n", namespace, "logs", &format!("{tcp}-etcd-0")])
                .await?
                .ok()?
                .stdout;
            Ok(
                match logs.lines().find(|l| {
                    l.contains("rejected connection") && l.contains(&from) && l.contains(why)
                }) {
                    Some(line) => {
                        println!("{tcp}-etcd-0: {line}");
                        Attempt::Done(())
                    }
                    None => Attempt::NotYet("no such line".into()),
                },
            )
        },
    )
    .await
}
