// Command noopplugin is an NRI plugin that subscribes to StartContainer and
// does nothing with it. The NRI benchmark runs it to measure what
// containerd's NRI round trip costs any such plugin, holdfast's or not.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	nri "github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct{}

var _ stub.StartContainerInterface = plugin{}

func (plugin) StartContainer(context.Context, *nri.PodSandbox, *nri.Container) error { return nil }

func main() {
	socket := flag.String("socket", "", "NRI socket")
	flag.Parse()
	s, err := stub.New(plugin{}, stub.WithSocketPath(*socket), stub.WithPluginName("noop"), stub.WithPluginIdx("90"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "noopplugin:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := s.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "noopplugin:", err)
		os.Exit(1)
	}
	fmt.Println("registered with runtime") // the line the benchmark waits for
	go func() { <-ctx.Done(); s.Stop() }()
	s.Wait()
}
