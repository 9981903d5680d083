//! Shared helpers of the Hostplane e2e suite (`tests/`).
//!
//! The suite reaches the cluster only through `$KUBECONFIG` ([`Client::try_default`]), `kubectl`
//! from `PATH`, and — for the host-level checks of the local seed — the host's network, so the same
//! tests run unchanged on a kind cluster and on the local seed (`e2e/seed/seed`). Every test gets
//! its own namespace ([`TestEnv`]), every wait is bounded and fails with what the namespace shows
//! (pods, container states, recent Events).
//!
//! Configuration comes from the environment (see [`Config`] and `e2e/README.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Write as _};
use std::future::Future;
use std::io::Write as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, EmptyDirVolumeSource, Event, HTTPGetAction, Namespace, Node,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Probe, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// How long a pod may take to be scheduled, pull/start and become ready (or finish).
pub const POD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a Deployment may take to become Available.
pub const DEPLOYMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new namespace may take to get its `default` ServiceAccount.
pub const NAMESPACE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a deleted object may take to disappear.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a Service may take to become reachable once its backend is ready (kube-proxy sync).
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one external command (`kubectl`, `iptables`, `ip`) may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Label on every namespace the suite creates.
pub const E2E_LABEL: &str = "hostplane.dev/e2e";
/// The test-client binary inside its image.
pub const TEST_CLIENT: &str = "/usr/local/bin/test-client";
/// The etcd binary inside the etcd image.
pub const ETCD: &str = "/usr/local/bin/etcd";

/// Pinned versions, shared with the seed scripts.
const VERSIONS_ENV: &str = include_str!("../versions.env");

// ---------------------------------------------------------------------------------------------
// configuration

/// The suite's configuration: environment variables, with defaults from `e2e/versions.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `E2E_KUBERNETES_VERSION`: the version every node and the API server must report (`v1.36.3`).
    pub kubernetes_version: String,
    /// `E2E_ETCD_IMAGE`: the etcd image (`registry.k8s.io/etcd:<ETCD_IMAGE_TAG>`).
    pub etcd_image: String,
    /// `E2E_TEST_CLIENT_IMAGE`: the image with `/usr/local/bin/test-client` (`e2e/test-client`).
    pub test_client_image: String,
    /// `E2E_IMAGE_PULL_POLICY`: `IfNotPresent` by default; the local seed sets `Never`.
    pub image_pull_policy: String,
    /// `E2E_LOCAL_SEED=1`: we run on the local seed, so host-level checks apply.
    pub local_seed: bool,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in unit tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |key: &str| lookup(key).filter(|v| !v.is_empty());
        let pinned = |key: &str| {
            versions_env_value(VERSIONS_ENV, key)
                .with_context(|| format!("e2e/versions.env has no {key}="))
        };
        let kubernetes_version = match var("E2E_KUBERNETES_VERSION") {
            Some(v) => v,
            None => pinned("KUBERNETES_VERSION")?,
        };
        let etcd_image = match var("E2E_ETCD_IMAGE") {
            Some(v) => v,
            None => format!("registry.k8s.io/etcd:{}", pinned("ETCD_IMAGE_TAG")?),
        };
        let local_seed = match var("E2E_LOCAL_SEED").as_deref() {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(other) => bail!("E2E_LOCAL_SEED must be 1 or 0, not {other:?}"),
        };
        Ok(Self {
            kubernetes_version: with_v_prefix(&kubernetes_version),
            etcd_image,
            test_client_image: var("E2E_TEST_CLIENT_IMAGE")
                .unwrap_or_else(|| "hostplane.dev/e2e/test-client:dev".to_owned()),
            image_pull_policy: var("E2E_IMAGE_PULL_POLICY")
                .unwrap_or_else(|| "IfNotPresent".to_owned()),
            local_seed,
        })
    }
}

/// A pinned version of e2e/versions.env (`FLUX_VERSION`, ...).
#[must_use]
pub fn pinned(key: &str) -> Option<String> {
    versions_env_value(VERSIONS_ENV, key)
}

/// The value of `KEY=value` in a shell-style env file: the first word, or the quoted string;
/// what follows it (a `# comment`) is ignored.
fn versions_env_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim_start().strip_prefix(key)?.strip_prefix('=')?;
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next()?,
            None => value.split_whitespace().next().unwrap_or_default(),
        };
        Some(value.to_owned())
    })
}

/// `1.36.3` -> `v1.36.3`, as nodes and `/version` report it.
fn with_v_prefix(version: &str) -> String {
    if version.starts_with('v') {
        version.to_owned()
    } else {
        format!("v{version}")
    }
}

/// Marks the calling test as skipped: says so on stderr past the test harness' output capture,
/// and records it in `$E2E_SKIP_FILE` (set by `e2e/run-tests`, which counts the skips).
pub fn skip(test: &str, reason: &str) -> Result<()> {
    // Written to the stderr handle, not with eprintln!, which the harness captures and hides.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} {reason}");
    if let Some(path) = std::env::var_os("E2E_SKIP_FILE").filter(|p| !p.is_empty()) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening E2E_SKIP_FILE {}", path.display()))?;
        writeln!(file, "{test}: {reason}")
            .with_context(|| format!("writing E2E_SKIP_FILE {}", path.display()))?;
    }
    Ok(())
}

/// A random lowercase hex token, different on every call.
#[must_use]
pub fn random_token() -> String {
    use std::hash::{BuildHasher as _, RandomState};
    // Every RandomState has fresh random keys, so hashing anything gives a random value.
    format!(
        "tok-{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

// ---------------------------------------------------------------------------------------------
// the test's environment: client, configuration, namespace

/// What one test works with: a client from `$KUBECONFIG`, the configuration and its own
/// namespace, which is deleted when this value is dropped (also when the test fails or panics).
pub struct TestEnv {
    pub client: Client,
    pub config: Config,
    pub ns: TestNamespace,
}

impl TestEnv {
    /// Connects to the cluster of `$KUBECONFIG` and creates the test's namespace, named after
    /// `test` (e.g. `e2e-etcd-x7k2p`).
    pub async fn new(test: &str) -> Result<Self> {
        let config = Config::from_env()?;
        let client = client().await?;
        let ns = TestNamespace::create(&client, test).await?;
        Ok(Self { client, config, ns })
    }

    /// The test's namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.ns.name()
    }

    /// An `Api` for a namespaced kind in the test's namespace.
    #[must_use]
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), self.namespace())
    }

    /// Creates a namespaced object in the test's namespace.
    pub async fn create<K>(&self, obj: &K) -> Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned
            + serde::Serialize,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        self.api::<K>()
            .create(&PostParams::default(), obj)
            .await
            .with_context(|| format!("creating {kind} {}/{}", self.namespace(), obj.name_any()))
    }

    /// Waits until `cond` holds for the object `name` (bounded by `timeout`), and returns it as the
    /// condition saw it (`None` if it matched a missing object). On timeout the error tells what
    /// the namespace shows: its pods and recent Events.
    pub async fn wait_for<K>(
        &self,
        api: &Api<K>,
        name: &str,
        what: &str,
        timeout: Duration,
        cond: impl Condition<K>,
    ) -> Result<Option<K>>
    where
        K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
    {
        // Boxed: a watch holds whole objects, which would make every caller's future large.
        let watch = Box::pin(await_condition(api.clone(), name, cond));
        match tokio::time::timeout(timeout, watch).await {
            Ok(result) => result.with_context(|| format!("watching {name} until {what}")),
            Err(_) => Err(anyhow!(
                "timed out after {} s waiting until {what}\n{}",
                timeout.as_secs(),
                self.diagnostics().await
            )),
        }
    }

    /// Waits until pod `name` is Running and Ready. Fails at once if it can never get there (it
    /// finished, or its image can never be had), else after [`POD_TIMEOUT`].
    pub async fn wait_pod_ready(&self, name: &str) -> Result<Pod> {
        let pod = self
            .wait_for(
                &self.api::<Pod>(),
                name,
                &format!("pod {name} is Running and Ready"),
                POD_TIMEOUT,
                |pod: Option<&Pod>| pod.is_some_and(|p| pod_is_ready(p) || pod_is_hopeless(p)),
            )
            .await?
            .with_context(|| format!("pod {name} is gone"))?;
        if !pod_is_ready(&pod) {
            bail!(
                "pod {name} can never become ready: {}\n{}",
                describe_pod(&pod),
                self.diagnostics().await
            );
        }
        Ok(pod)
    }

    /// Waits until pod `name` has finished (phase Succeeded or Failed); fails at once if it can
    /// never run, else after [`POD_TIMEOUT`].
    pub async fn wait_pod_finished(&self, name: &str) -> Result<Pod> {
        let pod = self
            .wait_for(
                &self.api::<Pod>(),
                name,
                &format!("pod {name} has finished"),
                POD_TIMEOUT,
                |pod: Option<&Pod>| pod.is_some_and(|p| pod_is_finished(p) || pod_is_hopeless(p)),
            )
            .await?
            .with_context(|| format!("pod {name} is gone"))?;
        if !pod_is_finished(&pod) {
            bail!(
                "pod {name} can never run: {}\n{}",
                describe_pod(&pod),
                self.diagnostics().await
            );
        }
        Ok(pod)
    }

    /// Waits until Deployment `name` is Available with all its replicas available.
    pub async fn wait_deployment_available(&self, name: &str) -> Result<Deployment> {
        self.wait_for(
            &self.api::<Deployment>(),
            name,
            &format!("deployment {name} is Available"),
            DEPLOYMENT_TIMEOUT,
            |d: Option<&Deployment>| d.is_some_and(deployment_is_available),
        )
        .await?
        .with_context(|| format!("deployment {name} is gone"))
    }

    /// Deletes pod `name` and waits until it is gone.
    pub async fn delete_pod(&self, name: &str) -> Result<()> {
        let api = self.api::<Pod>();
        let pod = api
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting pod {}/{name}", self.namespace()))?;
        let uid = pod
            .left()
            .and_then(|p| p.metadata.uid)
            .with_context(|| format!("pod {name} was deleted at once, without a uid"))?;
        self.wait_for(
            &api,
            name,
            &format!("pod {name} is gone"),
            DELETE_TIMEOUT,
            conditions::is_deleted(&uid),
        )
        .await?;
        Ok(())
    }

    /// Waits until some EndpointSlice of Service `service` lists a ready endpoint, i.e. the
    /// Service has a backend that the cluster's proxies are told about.
    pub async fn wait_service_endpoints(&self, service: &str) -> Result<()> {
        let api = self.api::<EndpointSlice>();
        let selector = format!("kubernetes.io/service-name={service}");
        poll_until(
            &format!("service {service} has a ready endpoint"),
            SERVICE_TIMEOUT,
            || async {
                let slices = api
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .context("listing EndpointSlices")?;
                let ready = slices
                    .items
                    .iter()
                    .flat_map(|s| s.endpoints.iter().flatten())
                    .any(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false));
                Ok(if ready {
                    Attempt::Done(())
                } else {
                    Attempt::NotYet(format!(
                        "{} EndpointSlices, no ready endpoint",
                        slices.items.len()
                    ))
                })
            },
        )
        .await
        .map_err(|err| err.context(format!("service {service} in {}", self.namespace())))
    }

    /// What the namespace shows, for a failure message: every pod's phase, conditions and
    /// container states, then the most recent Events.
    pub async fn diagnostics(&self) -> String {
        let ns = self.namespace();
        let mut out = format!("---- pods in namespace {ns}:\n");
        match self.api::<Pod>().list(&ListParams::default()).await {
            Ok(pods) if pods.items.is_empty() => out.push_str("  (none)\n"),
            Ok(pods) => {
                for pod in &pods.items {
                    let _ = writeln!(out, "  {}: {}", pod.name_any(), describe_pod(pod));
                }
            }
            Err(err) => {
                let _ = writeln!(out, "  (could not list pods: {err})");
            }
        }
        let _ = writeln!(out, "---- recent events in namespace {ns} (oldest first):");
        match self.api::<Event>().list(&ListParams::default()).await {
            Ok(events) if events.items.is_empty() => out.push_str("  (none)\n"),
            Ok(mut events) => {
                events.items.sort_by_key(event_time);
                let skip = events.items.len().saturating_sub(25);
                for e in &events.items[skip..] {
                    let _ = writeln!(out, "  {}", describe_event(e));
                }
            }
            Err(err) => {
                let _ = writeln!(out, "  (could not list events: {err})");
            }
        }
        out
    }

    /// Runs `kubectl -n <test namespace> ARGS...`.
    pub async fn kubectl(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut all = vec!["-n", self.namespace()];
        all.extend_from_slice(args);
        kubectl(&all).await
    }

    /// Runs `kubectl exec POD -- /usr/local/bin/test-client ARGS...` and requires it to succeed.
    pub async fn exec_test_client(&self, pod: &str, args: &[&str]) -> Result<CmdOutput> {
        let mut all = vec!["exec", pod, "--", TEST_CLIENT];
        all.extend_from_slice(args);
        self.kubectl(&all).await?.ok()
    }

    /// Creates `pod` (e.g. from [`test_client_pod`]) and waits until it is Running and Ready.
    pub async fn start_test_client(&self, pod: Pod) -> Result<Pod> {
        let name = pod.name_any();
        self.create(&pod).await?;
        self.wait_pod_ready(&name).await
    }

    /// Runs `test-client ARGS...` once in a new pod `name` (restartPolicy Never), waits until it
    /// has finished, and returns its exit code and logs. Fails only if it could not run at all;
    /// whether a non-zero exit is a failure is the caller's call.
    pub async fn run_test_client(&self, name: &str, args: &[&str]) -> Result<PodRun> {
        let mut pod = test_client_pod(&self.config, name, args);
        if let Some(spec) = pod.spec.as_mut() {
            spec.restart_policy = Some("Never".to_owned());
        }
        self.create(&pod).await?;
        let pod = self.wait_pod_finished(name).await?;
        let exit_code = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == "test-client"))
            .and_then(|c| c.state.as_ref()?.terminated.as_ref())
            .map(|t| t.exit_code)
            .with_context(|| {
                format!(
                    "pod {name} finished without an exit code: {}",
                    describe_pod(&pod)
                )
            })?;
        let logs = self
            .api::<Pod>()
            .logs(name, &LogParams::default())
            .await
            .with_context(|| format!("reading logs of pod {name}"))?;
        Ok(PodRun {
            pod: name.to_owned(),
            args: args.join(" "),
            exit_code,
            logs,
        })
    }

    /// Creates an etcd Deployment `name` (1 replica, data on an emptyDir, readiness on /health),
    /// a ClusterIP Service `name` and, if `node_port`, a NodePort Service `<name>-nodeport`; waits
    /// until the Deployment is Available and the Services have a ready endpoint.
    pub async fn deploy_etcd(&self, name: &str, node_port: bool) -> Result<Etcd> {
        self.create(&etcd_deployment(&self.config, name)).await?;
        let svc = self.create(&etcd_service(name, name, "ClusterIP")).await?;
        let cluster_ip = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .with_context(|| format!("service {name} got no clusterIP"))?;
        let node_port_svc = format!("{name}-nodeport");
        let node_port = if node_port {
            let svc = self
                .create(&etcd_service(&node_port_svc, name, "NodePort"))
                .await?;
            let port = svc
                .spec
                .and_then(|s| s.ports?.first()?.node_port)
                .with_context(|| format!("service {node_port_svc} got no nodePort"))?;
            Some(port)
        } else {
            None
        };
        self.wait_deployment_available(name).await?;
        self.wait_service_endpoints(name).await?;
        if node_port.is_some() {
            self.wait_service_endpoints(&node_port_svc).await?;
        }
        Ok(Etcd {
            name: name.to_owned(),
            cluster_ip,
            node_port,
        })
    }
}

/// A client for the cluster of `$KUBECONFIG` (or the in-cluster config).
pub async fn client() -> Result<Client> {
    Client::try_default()
        .await
        .context("connecting to the cluster of $KUBECONFIG")
}

/// A client of the tenant cluster of `kubeconfig` (the YAML of a TenantControlPlane's kubeconfig
/// Secret), as kube-rs reads it.
pub async fn tenant_client(kubeconfig: &str) -> Result<Client> {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(kubeconfig).context("parsing the tenant kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("the tenant kubeconfig is not usable by kube-rs")?;
    Client::try_from(config).context("building a client for the tenant")
}

/// Whether `error` says the server closed a kept-alive connection under the request, before any
/// byte of an answer (hyper: "connection closed before message completed", or a reset). An API
/// server that stops closes its idle HTTP/1.1 connections, and a request written at that instant
/// meets the close: HTTP lets a client retry an idempotent request then (RFC 9112, 9.3.1), and
/// Go's HTTP client (so kubectl, client-go, the kubelet) does so by itself; kube-rs does not. A
/// refused or failed connect is not this: no hyper connection existed yet.
pub fn closed_under_request(error: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            let reset = std::error::Error::source(h)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    )
                });
            return h.is_incomplete_message() || reset;
        }
        source = e.source();
    }
    false
}

/// Makes the idempotent call `call` as a Go client would: once more, at once, when the server
/// closed the connection under it (`closed_under_request`). Returns the result and, when it was
/// made again, the first error with its causes (each retry is reported by the tests that count
/// calls).
pub async fn call_as_go_would<T, F, Fut>(mut call: F) -> (kube::Result<T>, Option<String>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    match call().await {
        Err(e) if closed_under_request(&e) => {
            (call().await, Some(format!("{:#}", anyhow::Error::new(e))))
        }
        result => (result, None),
    }
}

/// The label that makes the API server enforce a Pod Security Standard in a namespace.
pub const POD_SECURITY_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// A namespace of its own for one test, labelled `hostplane.dev/e2e=true` and enforcing the
/// restricted Pod Security Standard; deleted on drop.
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates `e2e-<test>-<random>` and waits until its `default` ServiceAccount exists (before
    /// that, pods in it are refused).
    pub async fn create(client: &Client, test: &str) -> Result<Self> {
        let prefix: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("e2e-{}-", prefix.trim_matches('-'))),
                // Every tenant pod must pass the restricted Pod Security Standard: the API server
                // refuses the others here.
                labels: Some(BTreeMap::from([
                    (E2E_LABEL.to_owned(), "true".to_owned()),
                    (POD_SECURITY_LABEL.to_owned(), "restricted".to_owned()),
                ])),
                annotations: Some(BTreeMap::from([(
                    "hostplane.dev/e2e-test".to_owned(),
                    test.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating the namespace of test {test}"))?;
        let this = Self {
            name: created.name_any(),
        };
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &this.name);
        let found = tokio::time::timeout(
            NAMESPACE_TIMEOUT,
            await_condition(accounts, "default", |sa: Option<&ServiceAccount>| {
                sa.is_some()
            }),
        )
        .await;
        match found {
            Ok(Ok(_)) => Ok(this),
            Ok(Err(err)) => Err(err).context(format!(
                "watching for the default ServiceAccount in {}",
                this.name
            )),
            Err(_) => bail!(
                "namespace {} got no default ServiceAccount within {} s: is kube-controller-manager running?",
                this.name,
                NAMESPACE_TIMEOUT.as_secs()
            ),
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be stopping (a panic, a failed test): the
        // delete runs on a thread of its own, with its own runtime and client, and is waited for.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime")?;
            runtime.block_on(async {
                let client = tokio::time::timeout(COMMAND_TIMEOUT, client())
                    .await
                    .context("timed out connecting")??;
                // Deleting a namespace that holds a TenantControlPlane is refused until each
                // carries the confirmation (manifests/, deletion protection): a test's cleanup
                // confirms what it made.
                tokio::time::timeout(COMMAND_TIMEOUT, confirm_tcp_deletion(&client, &name))
                    .await
                    .context("timed out confirming the deletion of its TenantControlPlanes")??;
                let namespaces = Api::<Namespace>::all(client);
                let params = DeleteParams::background();
                // The policy reads the TenantControlPlanes from its own cache, which may not have
                // seen the confirmation yet: a refusal is retried for a few seconds.
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match tokio::time::timeout(COMMAND_TIMEOUT, namespaces.delete(&name, &params))
                        .await
                        .context("timed out")?
                    {
                        Err(kube::Error::Api(status)) if status.code == 403 && attempts < 20 => {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        result => {
                            result.context("deleting")?;
                            return Ok(());
                        }
                    }
                }
            })
        })
        .join();
        let problem = match deleted {
            Ok(Ok(())) => return,
            Ok(Err(err)) => format!("{err:#}"),
            Err(_) => "the cleanup thread panicked".to_owned(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "WARNING: test namespace {} was not deleted: {problem}",
            self.name
        );
    }
}

/// The annotation a TenantControlPlane needs before it (or its namespace) may be deleted.
pub const CONFIRM_DELETION: &str = "hostplane.dev/confirm-deletion";

/// Sets `hostplane.dev/confirm-deletion: "true"` on every TenantControlPlane in `namespace`
/// (none where the CRD is not installed).
pub async fn confirm_tcp_deletion(client: &Client, namespace: &str) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("hostplane.dev", "v1alpha1", "TenantControlPlane"),
        "tenantcontrolplanes",
    );
    let tcps: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let list = match tcps.list_metadata(&ListParams::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(e) => return Err(e).context("listing TenantControlPlanes"),
    };
    let patch = serde_json::json!({"metadata": {"annotations": {CONFIRM_DELETION: "true"}}});
    for tcp in list.items {
        let name = tcp.name_any();
        match tcps
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("annotating tcp {name}")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// object builders

/// Labels that select the pods of one test workload.
fn workload_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "e2e".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ])
}

/// `spec` made to pass the restricted Pod Security Standard, which every test namespace enforces:
/// user 65532, seccomp RuntimeDefault, no privilege escalation, every capability dropped.
#[must_use]
pub fn restricted(mut spec: PodSpec) -> PodSpec {
    spec.security_context = serde_json::from_value(serde_json::json!({
        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }))
    .ok();
    for c in &mut spec.containers {
        c.security_context = serde_json::from_value(serde_json::json!({
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
        }))
        .ok();
    }
    spec
}

/// A pod running `test-client ARGS...` (container `test-client`).
#[must_use]
pub fn test_client_pod(config: &Config, name: &str, args: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(workload_labels(name)),
            ..ObjectMeta::default()
        },
        spec: Some(restricted(PodSpec {
            containers: vec![Container {
                name: "test-client".to_owned(),
                image: Some(config.test_client_image.clone()),
                image_pull_policy: Some(config.image_pull_policy.clone()),
                // Set, not left to the image's entrypoint, so any build of the image works.
                command: Some(vec![TEST_CLIENT.to_owned()]),
                args: Some(args.iter().map(|&a| a.to_owned()).collect()),
                ..Container::default()
            }],
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(5),
            ..PodSpec::default()
        })),
        ..Pod::default()
    }
}

/// `pod` with PersistentVolumeClaim `claim` mounted at `path` in its first container.
#[must_use]
pub fn with_claim(mut pod: Pod, claim: &str, path: &str) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes.get_or_insert_default().push(Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        });
        if let Some(container) = spec.containers.first_mut() {
            container
                .volume_mounts
                .get_or_insert_default()
                .push(VolumeMount {
                    name: "data".to_owned(),
                    mount_path: path.to_owned(),
                    ..VolumeMount::default()
                });
        }
    }
    pod
}

/// `pod` whose first container is Ready only once an HTTP GET of `path` on `port` succeeds.
#[must_use]
pub fn with_http_readiness(mut pod: Pod, path: &str, port: i32) -> Pod {
    if let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        container.readiness_probe = Some(http_probe(path, port));
    }
    pod
}

fn http_probe(path: &str, port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(1),
        ..Probe::default()
    }
}

/// A single-member etcd serving plain HTTP on port 2379, data on an emptyDir.
#[must_use]
pub fn etcd_deployment(config: &Config, name: &str) -> Deployment {
    let labels = workload_labels(name);
    let args = [
        "--name=e2e",
        "--data-dir=/var/lib/etcd",
        "--listen-client-urls=http://0.0.0.0:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=e2e=http://127.0.0.1:2380",
    ];
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(restricted(PodSpec {
                    containers: vec![Container {
                        name: "etcd".to_owned(),
                        image: Some(config.etcd_image.clone()),
                        image_pull_policy: Some(config.image_pull_policy.clone()),
                        // Set, not left to the image: the upstream image may have no entrypoint.
                        command: Some(vec![ETCD.to_owned()]),
                        args: Some(args.iter().map(|&a| a.to_owned()).collect()),
                        readiness_probe: Some(http_probe("/health", 2379)),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "data".to_owned(),
                            mount_path: "/var/lib/etcd".to_owned(),
                            ..VolumeMount::default()
                        }]),
                        ..Container::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "data".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                })),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// A Service `name` of type `type_` (`ClusterIP`, `NodePort`), port 2379, for the pods of etcd
/// Deployment `etcd`.
#[must_use]
pub fn etcd_service(name: &str, etcd: &str, type_: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(workload_labels(etcd)),
            ports: Some(vec![ServicePort {
                name: Some("client".to_owned()),
                port: 2379,
                target_port: Some(IntOrString::Int(2379)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// An etcd deployed by [`TestEnv::deploy_etcd`].
#[derive(Debug, Clone)]
pub struct Etcd {
    pub name: String,
    pub cluster_ip: String,
    pub node_port: Option<i32>,
}

impl Etcd {
    /// `http://<clusterIP>:2379/health`.
    #[must_use]
    pub fn cluster_health_url(&self) -> String {
        format!("http://{}:2379/health", url_host(&self.cluster_ip))
    }
}

/// An IP address as the host part of a URL: IPv6 in brackets.
#[must_use]
pub fn url_host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// The body etcd's `/health` answers when healthy contains this.
pub const ETCD_HEALTHY: &str = r#""health":"true""#;

// ---------------------------------------------------------------------------------------------
// pods

/// The result of [`TestEnv::run_test_client`].
#[derive(Debug, Clone)]
pub struct PodRun {
    pub pod: String,
    /// The test-client arguments, for messages.
    pub args: String,
    pub exit_code: i32,
    /// stdout and stderr of the container.
    pub logs: String,
}

impl PodRun {
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }

    /// Requires exit code 0; the error quotes the logs.
    pub fn ok(self) -> Result<Self> {
        ensure!(
            self.succeeded(),
            "test-client {} in pod {} exited with {}; logs:\n{}",
            self.args,
            self.pod,
            self.exit_code,
            self.logs
        );
        Ok(self)
    }
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn pod_is_finished(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod_phase(pod) == "Running"
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod that can never become ready or run: it finished, or a container waits for something
/// that retrying does not bring (an image that must not be pulled, an invalid image name).
fn pod_is_hopeless(pod: &Pod) -> bool {
    const HOPELESS: [&str; 2] = ["ErrImageNeverPull", "InvalidImageName"];
    pod_is_finished(pod)
        || container_statuses(pod).any(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .is_some_and(|r| HOPELESS.contains(&r))
        })
}

fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_deref());
    let main = status.and_then(|s| s.container_statuses.as_deref());
    init.unwrap_or_default()
        .iter()
        .chain(main.unwrap_or_default())
}

/// One line on a pod: phase, conditions that are not True, each container's state.
fn describe_pod(pod: &Pod) -> String {
    let mut out = format!("phase {}", pod_phase(pod));
    if let Some(status) = &pod.status {
        if let Some(reason) = &status.reason {
            let _ = write!(
                out,
                " ({reason}: {})",
                status.message.as_deref().unwrap_or("")
            );
        }
        for c in status
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.status != "True")
        {
            let _ = write!(out, "; {}={}", c.type_, c.status);
            if let Some(reason) = &c.reason {
                let _ = write!(out, " ({reason}: {})", c.message.as_deref().unwrap_or(""));
            }
        }
    }
    for c in container_statuses(pod) {
        let _ = write!(
            out,
            "; container {}: ready={} restarts={} {}",
            c.name,
            c.ready,
            c.restart_count,
            describe_state(c.state.as_ref())
        );
        if c.restart_count > 0 {
            let _ = write!(out, ", last {}", describe_state(c.last_state.as_ref()));
        }
    }
    out
}

fn describe_state(state: Option<&k8s_openapi::api::core::v1::ContainerState>) -> String {
    let Some(state) = state else {
        return "state unknown".to_owned();
    };
    if let Some(w) = &state.waiting {
        format!(
            "waiting ({}: {})",
            w.reason.as_deref().unwrap_or("?"),
            w.message.as_deref().unwrap_or("")
        )
    } else if let Some(t) = &state.terminated {
        format!(
            "terminated (exit {}, {}: {})",
            t.exit_code,
            t.reason.as_deref().unwrap_or("?"),
            t.message.as_deref().unwrap_or("")
        )
    } else if state.running.is_some() {
        "running".to_owned()
    } else {
        "state unknown".to_owned()
    }
}

fn event_time(e: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn describe_event(e: &Event) -> String {
    let when = event_time(e).map_or_else(|| "?".to_owned(), |t| t.to_string());
    let obj = &e.involved_object;
    let count = match e.count {
        Some(n) if n > 1 => format!(" (x{n})"),
        _ => String::new(),
    };
    format!(
        "{when} {} {}/{} {}: {}{count}",
        e.type_.as_deref().unwrap_or("?"),
        obj.kind.as_deref().unwrap_or("?"),
        obj.name.as_deref().unwrap_or("?"),
        e.reason.as_deref().unwrap_or("?"),
        e.message.as_deref().unwrap_or("").trim_end(),
    )
}

fn deployment_is_available(d: &Deployment) -> bool {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return false;
    };
    let observed = status.observed_generation >= d.metadata.generation;
    let available = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Available" && c.status == "True");
    observed && available && status.available_replicas.unwrap_or(0) >= wanted
}

// ---------------------------------------------------------------------------------------------
// nodes, host-side HTTP

/// The InternalIP of the first Node that has one.
pub async fn node_internal_ip(client: &Client) -> Result<String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing nodes")?;
    nodes
        .items
        .iter()
        .flat_map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.as_deref())
                .unwrap_or_default()
        })
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .context("no node has an InternalIP address")
}

/// GETs `url` from this process (the host) until it answers 2xx, within `timeout`; returns the
/// body. Proxies from the environment are ignored: this checks the direct network path.
pub async fn http_get_until_ok(url: &str, timeout: Duration) -> Result<String> {
    let http = http_client()?;
    poll_until(&format!("GET {url} answers 2xx"), timeout, || async {
        Ok(match http.get(url).send().await {
            Ok(resp) if resp.status().is_success() => Attempt::Done(
                resp.text()
                    .await
                    .with_context(|| format!("reading the body of {url}"))?,
            ),
            Ok(resp) => Attempt::NotYet(format!("status {}", resp.status())),
            Err(err) => Attempt::NotYet(format!("{err:#}")),
        })
    })
    .await
}

/// The HTTP client of the host-side checks: no proxy, 5 s per request.
pub fn http_client() -> Result<reqwest::Client> {
    // reqwest has no TLS provider of its own here (see Cargo.toml): use ring, as kube does. An
    // error only says that a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")
}

/// One attempt of [`poll_until`].
pub enum Attempt<T> {
    /// Done: the value waited for.
    Done(T),
    /// Not yet, and why (quoted if the wait times out).
    NotYet(String),
}

/// Calls `attempt` until it is [`Attempt::Done`], once a second, at most for `timeout`; on timeout
/// the error quotes the last reason for [`Attempt::NotYet`]. An `Err` ends the wait at once.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = "no attempt finished".to_owned();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, attempt()).await {
            Ok(Ok(Attempt::Done(value))) => return Ok(value),
            Ok(Ok(Attempt::NotYet(why))) => last = why,
            Ok(Err(err)) => return Err(err.context(format!("while waiting until {what}"))),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {} s waiting until {what}; last attempt: {last}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1).min(remaining)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// external commands

/// What an external command did.
#[derive(Debug)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    #[must_use]
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Requires success; the error has the command line, its status and both outputs.
    pub fn ok(self) -> Result<Self> {
        ensure!(
            self.success(),
            "`{}` failed ({})\nstdout: {}\nstderr: {}",
            self.command,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        );
        Ok(self)
    }
}

/// Runs `program ARGS...` (from `PATH`) with a bound of [`COMMAND_TIMEOUT`], and returns what it
/// did, whatever its exit status.
pub async fn run_command(program: &str, args: &[&str]) -> Result<CmdOutput> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child)
        .await
        .map_err(|_| {
            anyhow!(
                "`{command}` did not finish within {} s",
                COMMAND_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("running `{command}` (is {program} on PATH?)"))?;
    Ok(CmdOutput {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `kubectl ARGS...`; kubectl finds the cluster through `$KUBECONFIG` like the suite.
pub async fn kubectl(args: &[&str]) -> Result<CmdOutput> {
    run_command("kubectl", args).await
}

/// Installs the checked-in CRDs of `crds/` (idempotent) and waits until they are served.
pub async fn install_crds() -> Result<()> {
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
    kubectl(&["apply", "--server-side", "--force-conflicts", "-k", crds])
        .await?
        .ok()
        .context("installing crds/")?;
    wait_crds_established(&["tenantcontrolplanes.hostplane.dev"]).await
}

/// Waits (60 s) until each CRD of `names` has condition Established. A poll, not `kubectl wait
/// --for=condition=Established`: that fails at once on a CRD whose status has no conditions yet
/// ("accessor error: <nil>", seen in CI right after the CRD was applied).
pub async fn wait_crds_established(names: &[&str]) -> Result<()> {
    for name in names {
        poll_until(
            &format!("crd/{name} is Established"),
            Duration::from_secs(60),
            || async move {
                let out = kubectl(&[
                    "get",
                    &format!("crd/{name}"),
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                ])
                .await?;
                Ok(if out.success() && out.stdout.trim() == "True" {
                    Attempt::Done(())
                } else {
                    Attempt::NotYet(format!(
                        "Established={:?} {}",
                        out.stdout.trim(),
                        out.stderr.trim()
                    ))
                })
            },
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the local seed's network guard

/// The local seed's network guard (`e2e/seed/seed`): chain `HOSTPLANE-GUARD` in table `mangle`,
/// jumped to from POSTROUTING for the default-route interface, dropping private ranges.
pub mod guard {
    use anyhow::Context as _;

    use super::{BTreeMap, BTreeSet, Result, ensure, run_command};

    pub const CHAIN: &str = "HOSTPLANE-GUARD";
    pub const DROPPED_RANGES: [&str; 4] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
    ];

    /// Checks that the guard is in place for traffic to `probe_ip`: the chain has a DROP rule
    /// for every range, POSTROUTING jumps to it for some interfaces, and the route to `probe_ip`
    /// leaves through one of them. Run this before sending anything to a private address.
    pub async fn check_in_place(probe_ip: &str) -> Result<()> {
        let refuse = "refusing to send the probe without the guard";
        let chain = iptables(&["-t", "mangle", "-S", CHAIN])
            .await
            .with_context(|| format!("the guard chain {CHAIN} (mangle) is not there; {refuse}"))?;
        let missing = missing_drop_rules(&chain);
        ensure!(
            missing.is_empty(),
            "the guard chain {CHAIN} lacks the DROP rules for {missing:?}; {refuse}. It has:\n{chain}"
        );
        let postrouting = iptables(&["-t", "mangle", "-S", "POSTROUTING"]).await?;
        let route = run_command("ip", &["-4", "route", "get", probe_ip])
            .await?
            .ok()
            .with_context(|| format!("no route to {probe_ip}; {refuse}"))?
            .stdout;
        let dev = route_device(&route)
            .with_context(|| format!("no device in the route to {probe_ip}: {route}"))?;
        ensure!(
            jump_covers(&postrouting, &dev),
            "traffic to {probe_ip} leaves through {dev}, but POSTROUTING (mangle) does not jump to \
             {CHAIN} for it; {refuse}. POSTROUTING:\n{postrouting}"
        );
        Ok(())
    }

    /// The packet counters of the chain's DROP rules, by destination range.
    pub async fn drop_counters() -> Result<BTreeMap<String, u64>> {
        let list = iptables(&["-t", "mangle", "-L", CHAIN, "-v", "-x", "-n"]).await?;
        let counters = parse_drop_counters(&list);
        let missing: Vec<_> = DROPPED_RANGES
            .iter()
            .filter(|r| !counters.contains_key(**r))
            .collect();
        ensure!(
            missing.is_empty(),
            "no DROP counters for {missing:?} in:\n{list}"
        );
        Ok(counters)
    }

    async fn iptables(args: &[&str]) -> Result<String> {
        Ok(run_command("iptables", args)
            .await
            .context("iptables (the guard checks need root on the seed's host)")?
            .ok()?
            .stdout)
    }

    /// The ranges of [`DROPPED_RANGES`] that have no `-A CHAIN -d RANGE -j DROP` rule in the
    /// output of `iptables -S CHAIN`.
    #[must_use]
    pub fn missing_drop_rules(spec: &str) -> Vec<&'static str> {
        let rules: BTreeSet<Vec<&str>> = spec
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        DROPPED_RANGES
            .into_iter()
            .filter(|range| !rules.contains(&vec!["-A", CHAIN, "-d", range, "-j", "DROP"]))
            .collect()
    }

    /// Whether `iptables -S POSTROUTING` output jumps to the chain for traffic out of `dev`: a
    /// jump with `-o dev`, `-o <prefix>+` matching it, or no `-o` at all. Negated matches never
    /// count.
    #[must_use]
    pub fn jump_covers(spec: &str, dev: &str) -> bool {
        spec.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.windows(2).any(|p| p == ["-j", CHAIN]))
            .any(|w| {
                if w.contains(&"!") {
                    return false;
                }
                match w.iter().position(|&t| t == "-o") {
                    None => true,
                    Some(i) => w.get(i + 1).is_some_and(|&o| match o.strip_suffix('+') {
                        Some(prefix) => dev.starts_with(prefix),
                        None => o == dev,
                    }),
                }
            })
    }

    /// The device of `ip route get` output (`... dev eth0 src ...`).
    #[must_use]
    pub fn route_device(route: &str) -> Option<String> {
        let words: Vec<&str> = route.split_whitespace().collect();
        let i = words.iter().position(|&w| w == "dev")?;
        words.get(i + 1).map(|&d| d.to_owned())
    }

    /// Packet counters of DROP rules by destination, from `iptables -L CHAIN -v -x -n` output.
    /// Columns differ between iptables versions (`prot` is `all` or `0`), so the destination is
    /// found as the word naming one of [`DROPPED_RANGES`].
    #[must_use]
    pub fn parse_drop_counters(list: &str) -> BTreeMap<String, u64> {
        list.lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.get(2) != Some(&"DROP") {
                    return None;
                }
                let packets = words.first()?.parse().ok()?;
                let range = words.iter().find(|w| DROPPED_RANGES.contains(w))?;
                Some(((*range).to_owned(), packets))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_come_from_versions_env() {
        let c = config(&[]).unwrap();
        let version = versions_env_value(VERSIONS_ENV, "KUBERNETES_VERSION").unwrap();
        let tag = versions_env_value(VERSIONS_ENV, "ETCD_IMAGE_TAG").unwrap();
        assert_eq!(c.kubernetes_version, format!("v{version}"));
        let v = c.kubernetes_version.strip_prefix('v').unwrap();
        assert_eq!(v.split('.').count(), 3, "{v}");
        assert!(v.split('.').all(|n| n.parse::<u32>().is_ok()), "{v}");
        assert_eq!(c.etcd_image, format!("registry.k8s.io/etcd:{tag}"));
        assert!(!tag.is_empty() && !tag.contains(['#', ' ']), "{tag}");
        assert_eq!(c.test_client_image, "hostplane.dev/e2e/test-client:dev");
        assert_eq!(c.image_pull_policy, "IfNotPresent");
        assert!(!c.local_seed);
    }

    #[test]
    fn environment_overrides_defaults() {
        let c = config(&[
            ("E2E_KUBERNETES_VERSION", "1.35.4"),
            ("E2E_ETCD_IMAGE", "example/etcd:1"),
            ("E2E_TEST_CLIENT_IMAGE", "example/tc:1"),
            ("E2E_IMAGE_PULL_POLICY", "Never"),
            ("E2E_LOCAL_SEED", "1"),
        ])
        .unwrap();
        assert_eq!(c.kubernetes_version, "v1.35.4");
        assert_eq!(c.etcd_image, "example/etcd:1");
        assert_eq!(c.test_client_image, "example/tc:1");
        assert_eq!(c.image_pull_policy, "Never");
        assert!(c.local_seed);
        let c = config(&[
            ("E2E_KUBERNETES_VERSION", "v1.36.3"),
            ("E2E_LOCAL_SEED", ""),
        ])
        .unwrap();
        assert_eq!(c.kubernetes_version, "v1.36.3");
        assert!(!c.local_seed);
        assert!(config(&[("E2E_LOCAL_SEED", "yes")]).is_err());
    }

    #[test]
    fn versions_env_values_skip_comments_and_similar_keys() {
        let text = "# KUBERNETES_VERSION=0.0.0\nKUBERNETES_VERSIONS=\"1.2.3 1.2.2\" # all\n\
                    KUBERNETES_VERSION=1.2.3     # default\nQUOTED=\"a b\"\n";
        assert_eq!(
            versions_env_value(text, "KUBERNETES_VERSION").unwrap(),
            "1.2.3"
        );
        assert_eq!(
            versions_env_value(text, "KUBERNETES_VERSIONS").unwrap(),
            "1.2.3 1.2.2"
        );
        assert_eq!(versions_env_value(text, "QUOTED").unwrap(), "a b");
        assert_eq!(versions_env_value(text, "MISSING"), None);
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn http_client_builds_with_the_ring_provider() {
        // reqwest is built without a TLS provider of its own; without one it panics here.
        http_client().unwrap();
        http_client().unwrap();
    }

    #[tokio::test]
    async fn http_get_retries_until_ok() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for status in ["503 Service Unavailable", "200 OK"] {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0; 1024];
                let _ = conn.read(&mut buf).await.unwrap();
                let body = if status.starts_with("200") {
                    "healthy"
                } else {
                    ""
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let url = format!("http://{addr}/health");
        let body = http_get_until_ok(&url, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(body, "healthy");
        server.await.unwrap();
    }

    /// Reads one request head from `conn`; false when the client closed it instead.
    async fn read_request(conn: &mut tokio::net::TcpStream) -> bool {
        use tokio::io::AsyncReadExt as _;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        true
    }

    async fn answer(conn: &mut tokio::net::TcpStream) {
        use tokio::io::AsyncWriteExt as _;
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
        )
        .await
        .unwrap();
    }

    fn plain_client(port: u16) -> Client {
        let url = format!("http://127.0.0.1:{port}").parse().unwrap();
        Client::try_from(kube::Config::new(url)).unwrap()
    }

    fn get_version() -> http::Request<Vec<u8>> {
        http::Request::get("/version").body(Vec::new()).unwrap()
    }

    /// A server that answers one request on a kept-alive connection and closes it under the
    /// next, as a stopping API server closes its idle connections: the call is made again, on a
    /// new connection, and succeeds.
    #[tokio::test]
    async fn a_call_the_server_closed_the_connection_under_is_made_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            assert!(read_request(&mut first).await);
            answer(&mut first).await;
            assert!(
                read_request(&mut first).await,
                "the second call reuses the connection"
            );
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            while read_request(&mut second).await {
                answer(&mut second).await;
            }
        });
        let client = plain_client(port);
        assert_eq!(client.request_text(get_version()).await.unwrap(), "ok");
        let (result, retried) = call_as_go_would(|| client.request_text(get_version())).await;
        assert_eq!(result.unwrap(), "ok");
        let first = retried.expect("made again");
        assert!(
            first.contains("connection closed before message completed"),
            "{first}"
        );
        drop(client);
        server.await.unwrap();
    }

    /// A refused connection is an outage, not a closed connection: not made again.
    #[tokio::test]
    async fn a_refused_call_is_not_made_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = plain_client(port);
        let mut calls = 0;
        let (result, retried) = call_as_go_would(|| {
            calls += 1;
            client.request_text(get_version())
        })
        .await;
        let err = result.unwrap_err();
        assert!(!closed_under_request(&err), "{err}");
        assert_eq!((calls, retried), (1, None));
    }

    #[tokio::test]
    async fn poll_until_times_out_with_the_last_reason() {
        let err = poll_until("never", Duration::from_millis(300), || async {
            Ok(Attempt::<()>::NotYet("still not".to_owned()))
        })
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("waiting until never") && msg.contains("still not"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn commands_report_status_and_output() {
        let out = run_command("sh", &["-c", "echo out; echo err >&2; exit 3"])
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out\n", "err\n")
        );
        let msg = format!("{:#}", out.ok().unwrap_err());
        assert!(
            msg.contains("exit status: 3") && msg.contains("err"),
            "{msg}"
        );
        let err = run_command("hostplane-no-such-command", &[])
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("on PATH"), "{err:#}");
    }

    // Real output of iptables v1.8.9 (nf_tables) for the chain e2e/seed/seed creates.
    const CHAIN_SPEC: &str = "\
-N HOSTPLANE-GUARD
-A HOSTPLANE-GUARD -d 10.0.0.1/32 -p udp -m udp --dport 53 -j RETURN
-A HOSTPLANE-GUARD -d 10.0.0.1/32 -p tcp -m tcp --dport 53 -j RETURN
-A HOSTPLANE-GUARD -d 10.0.0.0/8 -j DROP
-A HOSTPLANE-GUARD -d 172.16.0.0/12 -j DROP
-A HOSTPLANE-GUARD -d 192.168.0.0/16 -j DROP
-A HOSTPLANE-GUARD -d 100.64.0.0/10 -j DROP
";
    const CHAIN_LIST: &str = "\
Chain HOSTPLANE-GUARD (1 references)
    pkts      bytes target     prot opt in     out     source               destination
       0        0 RETURN     17   --  *      *       0.0.0.0/0            10.0.0.1             udp dpt:53
       0        0 RETURN     6    --  *      *       0.0.0.0/0            10.0.0.1             tcp dpt:53
      12      720 DROP       0    --  *      *       0.0.0.0/0            10.0.0.0/8
       0        0 DROP       0    --  *      *       0.0.0.0/0            172.16.0.0/12
       3      180 DROP       all  --  *      *       0.0.0.0/0            192.168.0.0/16
       0        0 DROP       0    --  *      *       0.0.0.0/0            100.64.0.0/10
";

    #[test]
    fn guard_rules_are_recognised() {
        assert!(guard::missing_drop_rules(CHAIN_SPEC).is_empty());
        let partial =
            CHAIN_SPEC.replace("-d 192.168.0.0/16 -j DROP", "-d 192.168.0.0/16 -j ACCEPT");
        assert_eq!(guard::missing_drop_rules(&partial), ["192.168.0.0/16"]);
        assert_eq!(guard::missing_drop_rules("").len(), 4);
    }

    #[test]
    fn guard_counters_are_parsed() {
        let counters = guard::parse_drop_counters(CHAIN_LIST);
        assert_eq!(
            counters,
            BTreeMap::from([
                ("10.0.0.0/8".to_owned(), 12),
                ("172.16.0.0/12".to_owned(), 0),
                ("192.168.0.0/16".to_owned(), 3),
                ("100.64.0.0/10".to_owned(), 0),
            ])
        );
    }

    #[test]
    fn guard_jump_and_route_are_matched() {
        let postrouting = "-P POSTROUTING ACCEPT\n\
            -A POSTROUTING -o eth0 -m comment --comment \"hostplane seed guard\" -j HOSTPLANE-GUARD\n";
        assert!(guard::jump_covers(postrouting, "eth0"));
        assert!(!guard::jump_covers(postrouting, "wlan0"));
        assert!(!guard::jump_covers("-P POSTROUTING ACCEPT\n", "eth0"));
        assert!(guard::jump_covers(
            "-A POSTROUTING -o en+ -j HOSTPLANE-GUARD",
            "enp1s0"
        ));
        assert!(guard::jump_covers(
            "-A POSTROUTING -j HOSTPLANE-GUARD",
            "eth1"
        ));
        assert!(!guard::jump_covers(
            "-A POSTROUTING ! -o eth0 -j HOSTPLANE-GUARD",
            "eth0"
        ));
        let route = "192.168.255.1 via 10.0.2.2 dev eth0 src 10.0.2.15 uid 0 \n    cache \n";
        assert_eq!(guard::route_device(route).as_deref(), Some("eth0"));
        assert_eq!(guard::route_device("local 127.0.0.1 lo"), None);
    }
}
