// Package metrics exports the engine's counts to Prometheus: a collector
// that takes one Snapshot from the engine per scrape (so every figure
// comes from the same data `holdfast status` shows), served on /metrics
// with /healthz beside it. Labels are bounded: hooks, verdicts, modes,
// policy names, registrar sources, map names; never pods or binaries.
//
// The engine (engine/daemon) and the holdfast command import it.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is the engine's state at one scrape.
type Snapshot struct {
	Decisions     []Decision
	Registrations []Registration
	// Containers are the registered containers.
	Containers int
	Maps       []Map
	// RingBufferLost counts events the kernel dropped on a full ring
	// buffer; DenialsUntracked denials not counted per container.
	RingBufferLost   uint64
	DenialsUntracked uint64
	// Event lines the engine published, failed to write to its events
	// file, and dropped for slow subscribers; current subscribers.
	EventLines        uint64
	EventWriteErrors  uint64
	SubscriberDropped uint64
	Subscribers       int
	// PolicyLoaded is false while the policy dir is refused (the last
	// good policies stay in force); PolicyGeneration counts good reloads.
	PolicyLoaded     bool
	PolicyGeneration uint64
	Policies         int
	RedactionLoaded  bool
	RedactionFilters int
}

// Decision is a running count of the kernel's decisions of one kind.
type Decision struct {
	Hook, Verdict, Policy, Mode string
	Count                       uint64
}

// Registration is a running count of registrations by registrar and result.
type Registration struct {
	Source, Result string
	Count          uint64
}

// Map is one BPF map's fill; Entries is -1 for maps sized in bytes.
type Map struct {
	Name     string
	Entries  int
	Capacity uint32
}

// Source is the engine as the exporter sees it.
type Source interface {
	Metrics(ctx context.Context) (*Snapshot, error)
	// Healthy fails when the engine cannot read its kernel state.
	Healthy(ctx context.Context) error
}

// ScrapeTimeout bounds one snapshot.
const ScrapeTimeout = 10 * time.Second

var (
	descDecisions = prometheus.NewDesc("holdfast_decisions_total",
		"Enforcement decisions by hook, verdict, policy and mode (kernel counters).", []string{"hook", "verdict", "policy", "mode"}, nil)
	descRegistrations = prometheus.NewDesc("holdfast_registrations_total",
		"Container registrations by registrar source and result since the engine started.", []string{"source", "result"}, nil)
	descContainers = prometheus.NewDesc("holdfast_registered_containers",
		"Containers registered with the engine.", nil, nil)
	descMapEntries = prometheus.NewDesc("holdfast_map_entries",
		"Entries in a BPF map.", []string{"map"}, nil)
	descMapCapacity = prometheus.NewDesc("holdfast_map_capacity",
		"Capacity of a BPF map (entries; bytes for the ring buffer).", []string{"map"}, nil)
	descRingLost = prometheus.NewDesc("holdfast_ringbuffer_lost_events_total",
		"Events the kernel dropped because the ring buffer was full (denials stay counted in summaries).", nil, nil)
	descUntracked = prometheus.NewDesc("holdfast_denials_untracked_total",
		"Denials not counted per container because the denials map was full.", nil, nil)
	descEventLines = prometheus.NewDesc("holdfast_event_lines_total",
		"Event and summary lines the engine published since it started.", nil, nil)
	descEventWriteErrors = prometheus.NewDesc("holdfast_event_write_errors_total",
		"Event lines the events file refused (a full disk).", nil, nil)
	descSubscriberDropped = prometheus.NewDesc("holdfast_event_subscriber_dropped_total",
		"Event lines dropped for subscribers that read too slowly.", nil, nil)
	descSubscribers = prometheus.NewDesc("holdfast_event_subscribers",
		"Clients following the event stream.", nil, nil)
	descPolicyLoaded = prometheus.NewDesc("holdfast_policy_load_ok",
		"1 when the policy dir last loaded, 0 while it is refused (the previous policies stay in force).", nil, nil)
	descPolicyGeneration = prometheus.NewDesc("holdfast_policy_generation",
		"Successful policy reloads since the engine started (0 at start).", nil, nil)
	descPolicies = prometheus.NewDesc("holdfast_policies",
		"Policies in force.", nil, nil)
	descRedactionLoaded = prometheus.NewDesc("holdfast_redaction_load_ok",
		"1 when the redaction filters last loaded, 0 while they are refused.", nil, nil)
	descRedactionFilters = prometheus.NewDesc("holdfast_redaction_filters",
		"Redaction filters in force.", nil, nil)
)

// Collector turns a Source's snapshot into metrics at each scrape.
type Collector struct {
	Source Source
}

// Describe sends nothing: the collector is unchecked, its label sets
// follow the engine's policies.
func (c Collector) Describe(chan<- *prometheus.Desc) {}

// Collect takes one snapshot and reports it.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	s, err := c.Source.Metrics(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDecisions, fmt.Errorf("engine metrics: %w", err))
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, d := range s.Decisions {
		counter(descDecisions, d.Count, d.Hook, d.Verdict, d.Policy, d.Mode)
	}
	for _, r := range s.Registrations {
		counter(descRegistrations, r.Count, r.Source, r.Result)
	}
	gauge(descContainers, float64(s.Containers))
	for _, m := range s.Maps {
		if m.Entries >= 0 {
			gauge(descMapEntries, float64(m.Entries), m.Name)
		}
		gauge(descMapCapacity, float64(m.Capacity), m.Name)
	}
	counter(descRingLost, s.RingBufferLost)
	counter(descUntracked, s.DenialsUntracked)
	counter(descEventLines, s.EventLines)
	counter(descEventWriteErrors, s.EventWriteErrors)
	counter(descSubscriberDropped, s.SubscriberDropped)
	gauge(descSubscribers, float64(s.Subscribers))
	gauge(descPolicyLoaded, boolValue(s.PolicyLoaded))
	gauge(descPolicyGeneration, float64(s.PolicyGeneration))
	gauge(descPolicies, float64(s.Policies))
	gauge(descRedactionLoaded, boolValue(s.RedactionLoaded))
	gauge(descRedactionFilters, float64(s.RedactionFilters))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Server serves /metrics and /healthz on one listener.
type Server struct {
	l   net.Listener
	srv *http.Server
}

// Listen binds addr (e.g. ":9090") at once, so a taken port fails the
// engine's start rather than a later scrape.
func Listen(addr string, src Source, log *slog.Logger) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector{Source: src}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError), ErrorHandling: promhttp.ContinueOnError,
		Timeout: ScrapeTimeout,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ScrapeTimeout)
		defer cancel()
		if err := src.Healthy(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return &Server{l: l, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 2 * ScrapeTimeout, IdleTimeout: time.Minute}}, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Serve serves until ctx is done. A nil Server (metrics off) returns nil.
func (s *Server) Serve(ctx context.Context) error {
	if s == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.srv.Shutdown(shut)
	})
	defer stop()
	if err := s.srv.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", s.l.Addr(), err)
	}
	return nil
}
