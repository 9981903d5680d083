# The two commands of README.md. Both need root (the local seed runs a kubelet and containerd).
.PHONY: up test down
up:   ## build what is missing, bring up the local seed, the operator and a sample tenant, print how to use them
	e2e/up
test: ## every test: fmt, clippy, unit, e2e (on $$KUBECONFIG if set, else on the local seed)
	e2e/run-tests
down: ## stop the local seed and remove every trace of it (logs are kept)
	e2e/seed/seed down
