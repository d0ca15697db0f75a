#!/usr/bin/env bash
# make demo: holdfast enforcing on a real runc container, and still enforcing
# while its engine is killed and restarted. It is a check, not only a show:
# any expectation that does not hold exits non-zero. Everything it creates
# (container, engine, pins, temp dirs) is removed on exit, even on failure.
# Needs root, bin/holdfast (make build), runc, busybox-static, jq.
set -euo pipefail
cd "$(dirname "$0")/.."

holdfast=$PWD/bin/holdfast
policies=$PWD/deploy/policies
bpf_dir=/sys/fs/bpf/holdfast-demo
ctr="holdfast-demo"
deadline=20 # seconds for any one step that waits

say() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() {
	printf '\nDEMO FAILED: %s\n' "$*" >&2
	if [ -s "${engine_log:-}" ]; then
		echo "--- engine log (last 20 lines) ---" >&2
		tail -n 20 "$engine_log" >&2
	fi
	exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (loads BPF programs, runs a container)"
[ -x "$holdfast" ] || fail "$holdfast not built; run make build"
for tool in runc jq busybox nsenter flock timeout; do
	command -v "$tool" >/dev/null || fail "$tool not installed; run make deps"
done

# One demo at a time: they share the bpffs directory.
mkdir -p /run/lock
exec 9>/run/lock/holdfast-demo.lock
flock -w "$deadline" 9 || fail "another demo holds /run/lock/holdfast-demo.lock"

work=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-demo.XXXXXX")
state=$work/state
socket=$work/engine.sock
events=$work/events.jsonl
engine_log=$work/engine.log
runc_root=$work/runc
bundle=$work/bundle
engine_pid=

stop_engine() {
	[ -n "$engine_pid" ] || return 0
	kill "$engine_pid" 2>/dev/null || true
	wait "$engine_pid" 2>/dev/null || true
	engine_pid=
}

cleanup() {
	local rc=$?
	set +e
	say "cleaning up"
	if [ -d "$runc_root" ]; then
		runc --root "$runc_root" delete -f "$ctr" >/dev/null 2>&1
	fi
	stop_engine
	if [ -e "$bpf_dir" ]; then
		"$holdfast" uninstall --bpf-dir "$bpf_dir" --state-dir "$state" --socket "$socket" | sed 's/^/    /'
	fi
	rm -rf "$work"
	if [ "$rc" = 0 ]; then
		printf '\nDEMO PASSED: enforcement held from the first instruction and across an engine kill -9\n'
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'printf "\nDEMO INTERRUPTED\n" >&2; exit 130' INT TERM

hf() { "$holdfast" "$@" --socket "$socket"; }

start_engine() {
	"$holdfast" engine --policies "$policies" --state-dir "$state" --bpf-dir "$bpf_dir" \
		--socket "$socket" --events "$events" >>"$engine_log" 2>&1 &
	engine_pid=$!
	local waited=0
	until hf status >/dev/null 2>&1; do
		kill -0 "$engine_pid" 2>/dev/null || { engine_pid=; fail "engine exited during start-up"; }
		((waited++ < deadline * 10)) || fail "engine socket $socket did not answer within ${deadline}s"
		sleep 0.1
	done
}

# Link IDs identify the attachments: equal IDs mean nothing was re-attached.
link_ids() { hf status -o json | jq -r '[.pinned[] | select(.kind == "link") | "\(.path | split("/") | last)=\(.id)"] | sort | join(" ")'; }

# show CMD...: the command as one would type it, quoting only where needed.
show() {
	local arg line='$'
	for arg; do
		[[ "$arg" =~ [[:space:]\'\"] ]] && arg="'$arg'"
		line+=" $arg"
	done
	printf '    %s' "$line"
}

in_ctr() { timeout "$deadline" runc --root "$runc_root" exec "$ctr" "$@" </dev/null; }

# expect_killed DESCRIPTION CMD...: the command dies by SIGKILL (runc exec
# exits 137) before printing anything.
expect_killed() {
	local what=$1 out rc=0
	shift
	out=$(in_ctr "$@" 2>&1) || rc=$?
	show "$@"
	printf ' -> exit %s%s\n' "$rc" "${out:+, output: $out}"
	[ "$rc" = 137 ] || fail "$what: expected SIGKILL (exit 137), got exit $rc"
	[ -z "$out" ] || fail "$what: the killed program printed output"
	ok "$what"
}

# expect_runs DESCRIPTION WANT CMD...: the command succeeds and prints WANT.
expect_runs() {
	local what=$1 want=$2 out rc=0
	shift 2
	out=$(in_ctr "$@" 2>&1) || rc=$?
	show "$@"
	printf ' -> exit %s, output: %s\n' "$rc" "$out"
	[ "$rc" = 0 ] || fail "$what: expected success, got exit $rc"
	[[ "$out" == *"$want"* ]] || fail "$what: output lacks \"$want\""
	ok "$what"
}

# expect_refused DESCRIPTION URL: the connect() fails with EPERM.
expect_refused() {
	local what=$1 url=$2 out rc=0
	out=$(in_ctr wget -q -O - "$url" 2>&1) || rc=$?
	show wget -q -O - "$url"
	printf ' -> exit %s, output: %s\n' "$rc" "$out"
	[ "$rc" != 0 ] || fail "$what: the connection succeeded"
	[[ "$out" == *"Operation not permitted"* ]] || fail "$what: expected \"Operation not permitted\""
	ok "$what"
}

# wait_events N FILTER: at least N events match the jq FILTER.
wait_events() {
	local n=$1 filter=$2 waited=0
	until [ "$(jq -c "select($filter)" "$events" 2>/dev/null | wc -l)" -ge "$n" ]; do
		((waited++ < deadline * 10)) || fail "no event matching $filter within ${deadline}s"
		sleep 0.1
	done
}

enforcement_checks() {
	expect_killed "denied binary /usr/bin/id is killed" /usr/bin/id
	expect_killed "a copy under the denied /tmp/ is killed" /bin/sh -c 'cp /bin/busybox /tmp/echo && exec /tmp/echo from-tmp'
	expect_runs "allowed binary /bin/echo runs" "allowed" /bin/echo allowed
	expect_refused "connect to denied 127.0.0.1:9 is refused" http://127.0.0.1:9/
	expect_runs "connect to allowed 127.0.0.1:8080 works" "hello from the demo container" wget -q -O - http://127.0.0.1:8080/
}

if [ -e "$bpf_dir" ]; then
	say "removing pins a previous interrupted demo left in $bpf_dir"
	"$holdfast" uninstall --bpf-dir "$bpf_dir" --state-dir "$state" --socket "$socket" | sed 's/^/    /'
fi

say "starting the engine on $policies (pins under $bpf_dir)"
mkdir -p "$state"
start_engine
hf status | sed 's/^/    /'
[ "$(hf status -o json | jq -r .adopted)" = false ] || fail "a fresh engine reports adopted pins"
links_before=$(link_ids)
[ -n "$links_before" ] || fail "status lists no pinned links"
ok "engine loaded and pinned its programs; links: $links_before"

say "building a busybox rootfs and a runc bundle"
mkdir -p "$bundle/rootfs"/{bin,usr/bin,tmp,proc,sys,dev,etc,www}
chmod 1777 "$bundle/rootfs/tmp"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
# Hard links, not symlinks: each applet keeps its own path, as in a real image.
for applet in sh echo sleep cat ls cp wget httpd; do
	ln "$bundle/rootfs/bin/busybox" "$bundle/rootfs/bin/$applet"
done
# A copy, not a link: exec rules match files by identity, and a link would
# make the rule on /usr/bin/id deny every applet.
cp "$bundle/rootfs/bin/busybox" "$bundle/rootfs/usr/bin/id"
echo 'root:x:0:0:root:/:/bin/sh' >"$bundle/rootfs/etc/passwd"
echo 'root:x:0:' >"$bundle/rootfs/etc/group"
echo 'hello from the demo container' >"$bundle/rootfs/www/index.html"
(cd "$bundle" && runc spec)
# Two web servers inside the container's own network namespace: the policy
# refuses port 9 and leaves 8080 alone.
jq --arg cg "/holdfast-demo-$$" '
	.process.terminal = false
	| .root.readonly = false
	| .process.args = ["/bin/sh", "-c", "httpd -p 127.0.0.1:8080 -h /www && httpd -p 127.0.0.1:9 -h /www && exec sleep 1000000"]
	| .linux.cgroupsPath = $cg
' "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
ok "bundle at $bundle"

say "creating the container (its process waits before its first instruction)"
timeout "$deadline" runc --root "$runc_root" create --bundle "$bundle" "$ctr" </dev/null >"$work/container.log" 2>&1 ||
	fail "runc create: $(cat "$work/container.log")"
pid=$(runc --root "$runc_root" state "$ctr" | jq -r .pid)
# The container's cgroup v2 directory: the 0:: line of its cgroup file, under
# the cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
read -r cg_mount cg_mount_root < <(awk '{ for (i = 6; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5, $4; break } }' /proc/self/mountinfo | head -n 1) || true
[ -n "$cg_mount" ] || fail "no cgroup2 mount in /proc/self/mountinfo"
cg_rel=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
[ -n "$cg_rel" ] || fail "/proc/$pid/cgroup has no cgroup v2 (0::) line"
[ "$cg_mount_root" = / ] || cg_rel=${cg_rel#"$cg_mount_root"}
cg_dir=$cg_mount$cg_rel
[ -d "$cg_dir" ] || fail "cgroup directory $cg_dir does not exist"
ok "container init pid $pid in cgroup $cg_dir (id $(stat -c %i "$cg_dir"))"

say "registering it with the engine, then starting it"
out=$(hf containers add --id demo --cgroup-path "$cg_dir" --namespace demo --pod demo --label app=demo --container main) ||
	fail "containers add failed"
echo "    $out"
[[ "$out" == *demo-lockdown* ]] || fail "policy demo-lockdown does not select the container"
runc --root "$runc_root" start "$ctr"
waited=0
until in_ctr wget -q -O /dev/null http://127.0.0.1:8080/ 2>/dev/null; do
	((waited++ < deadline * 10)) || fail "the container's web server on 8080 did not come up"
	sleep 0.1
done
# The refused port has a server too: from outside the container's cgroup it answers.
out=$(timeout "$deadline" nsenter -t "$pid" -n busybox wget -q -O - http://127.0.0.1:9/ 2>&1) ||
	fail "the container's server on port 9 does not answer from the host: $out"
ok "container running; its port 9 answers a host process outside its cgroup: $out"

say "enforcing with the engine running"
enforcement_checks

say "events written by the engine ($events)"
wait_events 2 '.action == "exec-killed"'
wait_events 1 '.action == "connect-refused"'
jq -c . "$events" | sed 's/^/    /'
jq -e -s 'any(.[]; .action == "exec-killed" and .binary == "/usr/bin/id" and .container.id == "demo" and .policy == "demo-lockdown")' "$events" >/dev/null ||
	fail "no exec-killed event for /usr/bin/id naming container demo and policy demo-lockdown"
jq -e -s 'any(.[]; .action == "connect-refused" and .destination == "127.0.0.1:9" and .container.id == "demo")' "$events" >/dev/null ||
	fail "no connect-refused event for 127.0.0.1:9 naming container demo"
ok "kill and refusal reported with container identity and policy"

say "kill -9 the engine"
kill -9 "$engine_pid"
wait "$engine_pid" 2>/dev/null || true
engine_pid=
hf status >/dev/null 2>&1 && fail "the engine still answers after kill -9"
ok "engine is gone"

say "enforcing with no engine running (pinned programs, links and maps)"
killed_before=$(jq -c 'select(.action == "exec-killed")' "$events" | wc -l)
enforcement_checks

say "restarting the engine"
start_engine
hf status | sed 's/^/    /'
[ "$(hf status -o json | jq -r .adopted)" = true ] || fail "the restarted engine did not adopt the pins"
links_after=$(link_ids)
echo "    links before kill -9: $links_before"
echo "    links after restart:  $links_after"
[ "$links_before" = "$links_after" ] || fail "link IDs changed: programs were re-attached instead of adopted"
ok "pins adopted: same link IDs, nothing detached or re-attached"
hf containers list | sed 's/^/    /'
hf containers list -o json | jq -e 'any(.[]; .id == "demo")' >/dev/null || fail "container demo is no longer registered"
ok "container demo still registered"
wait_events $((killed_before + 2)) '.action == "exec-killed"'
ok "kills that happened while the engine was down were reported after the restart"

say "enforcing after the restart"
enforcement_checks
