package policy

import (
	"strings"
	"testing"
)

func TestSelects(t *testing.T) {
	web := mustParseFile(t, "testdata/web-lockdown.yaml")[0]
	webPod := Identity{
		Namespace: "shop",
		Pod:       "web-7d9f",
		Labels:    map[string]string{"app": "web", "tier": "front", "pod-template-hash": "7d9f"},
		Container: "main",
		Image:     "registry.example/library/nginx:1.25",
	}
	with := func(change func(*Identity)) Identity {
		id := webPod
		id.Labels = map[string]string{}
		for k, v := range webPod.Labels {
			id.Labels[k] = v
		}
		change(&id)
		return id
	}

	tests := []struct {
		name   string
		policy *Policy
		id     Identity
		want   bool
	}{
		{"every field matches", web, webPod, true},
		{"other namespace", web, with(func(id *Identity) { id.Namespace = "default" }), false},
		{"no namespace known", web, with(func(id *Identity) { id.Namespace = "" }), false},
		{"matchLabels value differs", web, with(func(id *Identity) { id.Labels["app"] = "api" }), false},
		{"matchLabels key missing", web, with(func(id *Identity) { delete(id.Labels, "app") }), false},
		{"In value differs", web, with(func(id *Identity) { id.Labels["tier"] = "back" }), false},
		{"In key missing", web, with(func(id *Identity) { delete(id.Labels, "tier") }), false},
		{"other container", web, with(func(id *Identity) { id.Container = "sidecar" }), false},
		{"image glob does not cross into another repository", web, with(func(id *Identity) { id.Image = "registry.example/library/nginx-evil:1" }), false},
		{"image by digest has no tag", web, with(func(id *Identity) { id.Image = "registry.example/library/nginx@sha256:abcd" }), false},

		{"no selector selects everything", policyWithSelector(t, "{}"), Identity{}, true},
		{"empty podLabels selects everything", policyWithSelector(t, "{podLabels: {}}"), Identity{Labels: map[string]string{"a": "b"}}, true},
		{"namespace list", policyWithSelector(t, "{namespaces: [shop, cart]}"), Identity{Namespace: "cart"}, true},
		{"namespace list miss", policyWithSelector(t, "{namespaces: [shop, cart]}"), Identity{Namespace: "kube-system"}, false},
		{"absent fields match anything", policyWithSelector(t, "{containers: [main]}"),
			Identity{Namespace: "x", Labels: map[string]string{"z": "y"}, Container: "main", Image: "anything"}, true},

		{"matchLabels extra labels ok", policyWithSelector(t, "{podLabels: {matchLabels: {app: web}}}"), Identity{Labels: map[string]string{"app": "web", "x": "y"}}, true},
		{"matchLabels no labels", policyWithSelector(t, "{podLabels: {matchLabels: {app: web}}}"), Identity{}, false},

		{"In one of values", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: tier, operator: In, values: [front, edge]}]}}"), Identity{Labels: map[string]string{"tier": "edge"}}, true},
		{"In none of values", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: tier, operator: In, values: [front, edge]}]}}"), Identity{Labels: map[string]string{"tier": "back"}}, false},
		{"NotIn other value", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: tier, operator: NotIn, values: [back]}]}}"), Identity{Labels: map[string]string{"tier": "front"}}, true},
		{"NotIn listed value", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: tier, operator: NotIn, values: [back]}]}}"), Identity{Labels: map[string]string{"tier": "back"}}, false},
		{"NotIn key absent", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: tier, operator: NotIn, values: [back]}]}}"), Identity{}, true},
		{"Exists with empty value", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: canary, operator: Exists}]}}"), Identity{Labels: map[string]string{"canary": ""}}, true},
		{"Exists key absent", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: canary, operator: Exists}]}}"), Identity{Labels: map[string]string{"app": "web"}}, false},
		{"DoesNotExist key absent", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: holdfast.dev/exempt, operator: DoesNotExist}]}}"), Identity{}, true},
		{"DoesNotExist key present", policyWithSelector(t, "{podLabels: {matchExpressions: [{key: holdfast.dev/exempt, operator: DoesNotExist}]}}"), Identity{Labels: map[string]string{"holdfast.dev/exempt": "true"}}, false},
		{"expressions are ANDed", policyWithSelector(t, "{podLabels: {matchLabels: {app: web}, matchExpressions: [{key: canary, operator: DoesNotExist}]}}"),
			Identity{Labels: map[string]string{"app": "web", "canary": "1"}}, false},

		{"image glob", policyWithSelector(t, `{images: ["registry.local/*/app:v*"]}`), Identity{Image: "registry.local/team/app:v2"}, true},
		{"image glob miss", policyWithSelector(t, `{images: ["registry.local/*/app:v*"]}`), Identity{Image: "registry.local/team/app:latest"}, false},
		{"any of several images", policyWithSelector(t, `{images: ["a:*", "b:*"]}`), Identity{Image: "b:1"}, true},
		{"container name", policyWithSelector(t, "{containers: [main, web]}"), Identity{Container: "web"}, true},
		{"container name miss", policyWithSelector(t, "{containers: [main, web]}"), Identity{Container: "istio-proxy"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Selects(tt.id); got != tt.want {
				t.Errorf("Selects(%+v) = %t, want %t (mismatch: %q)", tt.id, got, tt.want, tt.policy.Mismatch(tt.id))
			}
			// Mismatch explains exactly the containers Selects refuses.
			if why := tt.policy.Mismatch(tt.id); (why == "") != tt.want {
				t.Errorf("Mismatch(%+v) = %q, inconsistent with Selects = %t", tt.id, why, tt.want)
			}
		})
	}
}

func TestMismatchNamesTheField(t *testing.T) {
	web := mustParseFile(t, "testdata/web-lockdown.yaml")[0]
	tests := []struct {
		id   Identity
		want string
	}{
		{Identity{Namespace: "default"}, `namespace "default" is not one of ["shop"]`},
		{Identity{Namespace: "shop", Labels: map[string]string{"app": "api"}}, `pod labels {app=api} do not match "app=web,tier in (front)"`},
		{Identity{Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}, Container: "side"}, `container "side" is not one of ["main"]`},
		{Identity{Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}, Container: "main", Image: "busybox"},
			`image "busybox" matches none of ["registry.example/library/nginx:*"]`},
	}
	for _, tt := range tests {
		if got := web.Mismatch(tt.id); got != tt.want {
			t.Errorf("Mismatch(%+v) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestSetSelectSortsByName(t *testing.T) {
	ps := mustParse(t, "p.yaml",
		doc("zeta", "{}")+"---\n"+
			doc("alpha", "{selector: {namespaces: [shop]}}")+"---\n"+
			doc("mid", "{selector: {namespaces: [other]}}"))
	set := mustSet(t, ps...)
	got := names(set.Select(Identity{Namespace: "shop"}))
	if want := "alpha,zeta"; got != want {
		t.Errorf("Select(shop) = %s, want %s", got, want)
	}
	if got, want := names(set.Select(Identity{Namespace: "none"})), "zeta"; got != want {
		t.Errorf("Select(none) = %s, want %s", got, want)
	}
}

func policyWithSelector(t *testing.T, selector string) *Policy {
	t.Helper()
	return mustParse(t, "selector.yaml", doc("p", "{selector: "+selector+"}"))[0]
}

func names(ps []*Policy) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return strings.Join(out, ",")
}

// BenchmarkSelectsMismatch is a policy asked about a container it does not
// select, as a restart asks for each of thousands of containers.
//
//	go test -run '^$' -bench SelectsMismatch ./engine/policy/
func BenchmarkSelectsMismatch(b *testing.B) {
	web := mustParseFile(b, "testdata/web-lockdown.yaml")[0]
	id := Identity{Namespace: "shop", Pod: "api-1", Labels: map[string]string{"app": "api", "tier": "front"}, Container: "main"}
	for b.Loop() {
		if web.Selects(id) {
			b.Fatal("selects a pod labelled app=api")
		}
	}
}
