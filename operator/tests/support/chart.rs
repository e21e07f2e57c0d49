//! The Helm chart `charts/hsmbridge`, installed with real helm 3.10 through the helpers of
//! `scripts/lib/chart.sh` (the same steps as `scripts/chart-test.sh`: it labels the release
//! namespace so the webhook never sees it, and installs without `--wait`: there is no kubelet).

use std::process::{Command, Output, Stdio};

use super::apiserver::{path_str, ApiServer, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
use super::paths;

/// The release name the tests install.
pub const RELEASE: &str = "hsmbridge";
/// The release namespace (the operator's namespace: the chart's names are fixed).
pub const NAMESPACE: &str = OPERATOR_NAMESPACE;
/// The CRD, kept by `helm uninstall` (`helm.sh/resource-policy: keep`).
pub const CRD: &str = "hsmpartitions.hsmbridge.io";

/// `scripts/lib/chart.sh`, sourced, then `SCRIPT` run by bash with `args` as `$1...`; as the
/// admin of `api`.
fn chart_sh(api: &ApiServer, script: &str, args: &[&str]) -> Output {
    let lib = paths::repo_root().join("scripts/lib/chart.sh");
    // $0 must not be the library: sourced with $0 == BASH_SOURCE, it runs its command line.
    Command::new("bash")
        .arg("-c")
        .arg(format!(". \"$CHART_LIB\" && {script}"))
        .arg("hsmbridge-test")
        .args(args)
        .env("CHART_LIB", &lib)
        .env("KUBECONFIG", api.admin_kubeconfig())
        .env("KUBECTL", api.var("KUBECTL"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", lib.display()))
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ApiServer::start` applies `crds/` and `operator/deploy/rbac.yaml` for the other tests;
/// helm refuses to install over objects it does not own. Deletes those objects (not the
/// namespace: without a namespace controller it would stay Terminating) and waits until the
/// CRD is gone, so that the chart alone creates the CRD, the ServiceAccount and the RBAC.
pub fn remove_testenv_manifests(api: &ApiServer) {
    let ns = NAMESPACE;
    let sa = OPERATOR_SERVICE_ACCOUNT;
    api.kubectl_ok(&[
        "delete",
        "--ignore-not-found",
        "--wait=true",
        "--timeout=60s",
        "customresourcedefinition",
        CRD,
    ]);
    api.kubectl_ok(&["delete", "--ignore-not-found", "clusterrole,clusterrolebinding", sa]);
    api.kubectl_ok(&["-n", ns, "delete", "--ignore-not-found", "serviceaccount", sa]);
    api.kubectl_ok(&[
        "-n",
        ns,
        "delete",
        "--ignore-not-found",
        "role,rolebinding",
        &format!("{sa}-leader-election"),
    ]);
}

/// `helm install RELEASE charts/hsmbridge -n NAMESPACE ARGS...` (chart_install); returns helm's output.
pub fn install(api: &ApiServer, helm_args: &[&str]) -> String {
    let mut args = vec![RELEASE, NAMESPACE];
    args.extend_from_slice(helm_args);
    ok("helm install", chart_sh(api, "chart_install \"$@\"", &args))
}

/// `helm uninstall RELEASE -n NAMESPACE` (chart_uninstall); returns helm's output.
pub fn uninstall(api: &ApiServer) -> String {
    ok(
        "helm uninstall",
        chart_sh(api, "chart_uninstall \"$@\"", &[RELEASE, NAMESPACE]),
    )
}

/// `KIND/NAMESPACE/NAME` of every object, of every listable kind, in every namespace, labelled
/// `app.kubernetes.io/instance=RELEASE` (chart_labelled).
pub fn labelled(api: &ApiServer) -> Vec<String> {
    lines(&ok(
        "chart_labelled",
        chart_sh(api, "chart_labelled \"$@\"", &[RELEASE]),
    ))
}

/// `KIND/NAME` of every object in namespace `ns`, Events aside (chart_namespace_contents).
pub fn namespace_contents(api: &ApiServer, ns: &str) -> Vec<String> {
    lines(&ok(
        "chart_namespace_contents",
        chart_sh(api, "chart_namespace_contents \"$@\"", &[ns]),
    ))
}

fn lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// `helm get manifest` of the release: which kinds/names the chart itself created.
pub fn manifest(api: &ApiServer) -> String {
    let helm = helm_bin();
    let out = Command::new(&helm)
        .args(["get", "manifest", RELEASE, "-n", NAMESPACE])
        .env("KUBECONFIG", api.admin_kubeconfig())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {helm}: {e}"));
    ok("helm get manifest", out)
}

/// helm 3.10 from `scripts/install-helm.sh` (cached after the first run).
pub fn helm_bin() -> String {
    let script = paths::repo_root().join("scripts/install-helm.sh");
    let out = Command::new("bash")
        .arg(path_str(&script))
        .stdin(Stdio::null())
        .output();
    let out = out.unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    ok("scripts/install-helm.sh", out).trim().to_owned()
}
