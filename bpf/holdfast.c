//go:build ignore
// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

// holdfast enforcement programs. One program set serves every container:
// each hook finds the registered cgroup the current task belongs to (its own
// or the nearest registered ancestor) and only then looks at rules, so cost
// does not grow with the number of cgroups or policies.

#include "headers/vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#include "maps.h"
#include "cgroup.h"
#include "env.h"
#include "process.h"
#include "events.h"
#include "tasks.h"
#include "files.h"
#include "passes.h"
#include "exec.h"
#include "mmap.h"
#include "net.h"
