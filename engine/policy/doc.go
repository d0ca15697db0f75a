// Package policy is the workload policy language: it parses and validates
// WorkloadPolicy files, decides which policies select a container, and
// compiles the union of the selected policies into a bpf.Ruleset. Parsed
// policies and sets are immutable, so one Set can serve concurrent readers
// while a reload builds its successor.
//
// The engine, engine/redact and the holdfast command import it; registrars
// do not.
package policy
