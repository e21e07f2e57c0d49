# The set-up commands of the README, and the benchmarks.
.PHONY: demo demo-cluster test bench bench-operator bench-webhook hostile-report

# End to end on a local SoftHSM token: enroll, start the sidecar in managed mode, and let
# pkcs11-tool list slots, generate an EC key, sign and verify through the shim without the PIN.
demo:
	bash scripts/demo.sh

# The same story on a one-node Kubernetes cluster built here (scripts/kube-node.sh): helm install,
# enrollment Job, a labelled Deployment signing through the shim, sidecar restart, readiness,
# denials, reinstall (e2e/story.sh). Builds what it needs; stops the node afterwards. Needs root.
demo-cluster:
	bash e2e/story.sh

# Installs system packages, builds the workspace in release mode and runs all tests.
test:
	bash scripts/test.sh

# SoftHSM directly vs p11-kit RPC vs shim+sidecar: ops/s, p50/p99 latency, RSS.
bench:
	bash scripts/bench.sh

# hsm-operator: time until 500 HsmPartitions are Ready from a cold start on a real kube-apiserver, peak RSS.
bench-operator:
	bash scripts/operator-bench.sh

# Injection webhook: p50/p99 (operator's histogram) while 200 labelled pods are created on a real kube-apiserver.
bench-webhook:
	bash scripts/webhook-bench.sh

# The hostile-peer suite against a managed sidecar, with the figures it prints (not a benchmark).
hostile-report:
	bash scripts/hostile-report.sh

# Container images from target/release/, smoke-tested; local Debian bases when no registry answers.
.PHONY: images
images:
	bash scripts/images.sh
