# The two commands of README.md. Both need root (the local seed runs a kubelet and containerd).
.PHONY: up test down
up:   ## build what is missing, bring up the local seed, print how to use it
	e2e/seed/install-deps
	e2e/seed/seed up
test: ## every test: fmt, clippy, unit, e2e (on $$KUBECONFIG if set, else on the local seed)
	e2e/run-tests
down: ## stop the local seed and remove every trace of it (logs are kept)
	e2e/seed/seed down
