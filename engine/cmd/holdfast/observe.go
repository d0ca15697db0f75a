package main

import (
	"flag"
	"log/slog"

	"github.com/holdfast-dev/holdfast/engine/daemon"
	"github.com/holdfast-dev/holdfast/engine/eventstream"
	"github.com/holdfast-dev/holdfast/engine/metrics"
)

// observeConfig is what the engine's event and metrics flags set.
type observeConfig struct {
	options     daemon.ObserveOptions
	metricsAddr string
}

// observeFlags defines the event pipeline and metrics flags on fs.
func observeFlags(fs *flag.FlagSet) *observeConfig {
	c := &observeConfig{}
	fs.BoolVar(&c.options.CaptureEnv, "capture-env", false, "capture the environment of each exec in registered containers (first 1023 bytes, 64 variables) into events, values redacted by RedactionFilter envKeys; off, the kernel captures nothing")
	fs.IntVar(&c.options.SubscriberBuffer, "event-subscriber-buffer", eventstream.DefaultSubscriberBuffer,
		"event lines queued per `holdfast events` reader before it loses some")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on this address (e.g. :9090; empty: off)")
	return c
}

// listenMetrics binds the metrics address; nil when metrics are off.
func (c *observeConfig) listenMetrics(eng *daemon.Engine, log *slog.Logger) (*metrics.Server, error) {
	if c.metricsAddr == "" {
		return nil, nil
	}
	srv, err := metrics.Listen(c.metricsAddr, eng, log)
	if err != nil {
		return nil, err
	}
	log.Info("serving metrics", "addr", srv.Addr().String())
	return srv, nil
}
