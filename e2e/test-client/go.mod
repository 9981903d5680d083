module hostplane.dev/e2e/test-client

go 1.26
