// podstop stops and removes every pod sandbox of one CRI runtime, through the runtime, so that the
// CNI plugin's DEL runs for each (IP reservations, NAT chains and veths are released). The seed's
// `down` calls it after stopping the kubelet and before stopping containerd. crictl would do the
// same, but cri-tools is not served by our module proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("runtime-endpoint", "", "CRI socket, e.g. unix:///var/lib/hostplane-seed/containerd/containerd.sock")
	timeout := flag.Duration("timeout", 60*time.Second, "overall time limit")
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "podstop: --runtime-endpoint is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *endpoint); err != nil {
		fmt.Fprintln(os.Stderr, "podstop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, endpoint string) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect %s: %w", endpoint, err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	failed := 0
	for _, sb := range list.Items {
		name := sb.GetMetadata().GetNamespace() + "/" + sb.GetMetadata().GetName()
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "podstop: stop %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "podstop: remove %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("stopped and removed pod sandbox %s\n", name)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d pod sandboxes were not stopped", failed, len(list.Items))
	}
	return nil
}
