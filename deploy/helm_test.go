package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/holdfast-dev/holdfast/engine/daemon"
	"github.com/holdfast-dev/holdfast/test/harness"
)

const chartDir = "helm/holdfast"

func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(harness.Helm(t), args...).CombinedOutput()
	return string(out), err
}

// rendered is one `helm template` run decoded into the Kubernetes types.
type rendered struct {
	daemonSet      *appsv1.DaemonSet
	configMaps     []corev1.ConfigMap
	serviceAccount *corev1.ServiceAccount
	namespace      *corev1.Namespace
}

// decodeManifest decodes every object strictly (unknown fields are errors)
// into its k8s.io/api type; an unexpected kind is an error too.
func decodeManifest(t *testing.T, manifest string) rendered {
	t.Helper()
	var r rendered
	for i, doc := range strings.Split(manifest, "\n---\n") {
		var meta struct{ Kind, APIVersion string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var err error
		switch meta.APIVersion + " " + meta.Kind {
		case " ":
			continue // comments only
		case "apps/v1 DaemonSet":
			r.daemonSet = &appsv1.DaemonSet{}
			err = yaml.UnmarshalStrict([]byte(doc), r.daemonSet)
		case "v1 ConfigMap":
			var cm corev1.ConfigMap
			err = yaml.UnmarshalStrict([]byte(doc), &cm)
			r.configMaps = append(r.configMaps, cm)
		case "v1 ServiceAccount":
			r.serviceAccount = &corev1.ServiceAccount{}
			err = yaml.UnmarshalStrict([]byte(doc), r.serviceAccount)
		case "v1 Namespace":
			r.namespace = &corev1.Namespace{}
			err = yaml.UnmarshalStrict([]byte(doc), r.namespace)
		default:
			t.Fatalf("document %d: unexpected object %s %s", i, meta.APIVersion, meta.Kind)
		}
		if err != nil {
			t.Fatalf("document %d (%s) does not decode strictly into k8s.io/api: %v\n%s", i, meta.Kind, err, doc)
		}
	}
	if r.daemonSet == nil || r.serviceAccount == nil {
		t.Fatalf("manifest lacks the DaemonSet or ServiceAccount:\n%s", manifest)
	}
	return r
}

func container(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func TestHelmLint(t *testing.T) {
	for _, runtime := range []string{"containerd", "crio"} {
		if out, err := runHelm(t, "lint", "--strict", chartDir, "--set", "runtime="+runtime); err != nil {
			t.Errorf("helm lint (runtime %s): %v\n%s", runtime, err, out)
		}
	}
}

func TestHelmTemplate(t *testing.T) {
	probe := []string{"/usr/local/bin/holdfast", "status", "--ready", "--socket=/run/holdfast/engine.sock"}
	for _, tt := range []struct {
		runtime, criSocket string
	}{
		{"containerd", "unix:///run/containerd/containerd.sock"},
		{"crio", "unix:///var/run/crio/crio.sock"},
	} {
		t.Run(tt.runtime, func(t *testing.T) {
			out, err := runHelm(t, "template", "hf", chartDir, "--namespace", "sec",
				"--set", "runtime="+tt.runtime, "--set", "metrics.port=9464", "--set", "failMode=closed",
				"--set", "failOpenNamespaces={kube-system,monitoring}", "--set", "image.tag=v9")
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			r := decodeManifest(t, out)
			pod := r.daemonSet.Spec.Template.Spec
			if !pod.HostPID || r.daemonSet.Namespace != "sec" || r.namespace != nil {
				t.Errorf("hostPID %v, namespace %q, Namespace object %v", pod.HostPID, r.daemonSet.Namespace, r.namespace)
			}
			engine := container(pod.Containers, "engine")
			if engine == nil {
				t.Fatal("no engine container")
			}
			if engine.Image != "holdfast:v9" || engine.SecurityContext == nil || engine.SecurityContext.Privileged == nil || !*engine.SecurityContext.Privileged {
				t.Errorf("engine image %q, security context %+v", engine.Image, engine.SecurityContext)
			}
			for _, want := range []string{"--cri-endpoint=" + tt.criSocket, "--metrics-addr=:9464", "--policies=/etc/holdfast/policies.d"} {
				if !slices.Contains(engine.Command, want) {
					t.Errorf("engine command %q lacks %s", engine.Command, want)
				}
			}
			if len(engine.Ports) != 1 || engine.Ports[0].ContainerPort != 9464 {
				t.Errorf("engine ports %+v, want the metrics port 9464", engine.Ports)
			}
			for name, p := range map[string]*corev1.Probe{"startup": engine.StartupProbe, "readiness": engine.ReadinessProbe, "liveness": engine.LivenessProbe} {
				if p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, probe) {
					t.Errorf("%s probe: want exec %q, got %+v", name, probe, p)
				}
			}
			var bpffs *corev1.VolumeMount
			for i, m := range engine.VolumeMounts {
				if m.MountPath == "/sys/fs/bpf" {
					bpffs = &engine.VolumeMounts[i]
				}
			}
			if bpffs == nil || bpffs.MountPropagation == nil || *bpffs.MountPropagation != corev1.MountPropagationBidirectional {
				t.Errorf("bpffs mount %+v: want Bidirectional propagation", bpffs)
			}
			if len(r.configMaps) != 1 || r.configMaps[0].Data["web-lockdown.yaml"] == "" {
				t.Errorf("want the chart's policy ConfigMap, got %+v", r.configMaps)
			}

			nri := container(pod.Containers, "nri")
			switch tt.runtime {
			case "containerd":
				if nri == nil || len(pod.InitContainers) != 0 {
					t.Fatalf("containerd: want the nri sidecar and no init container, got %d containers, %d init", len(pod.Containers), len(pod.InitContainers))
				}
				for _, want := range []string{"--fail-mode=closed", "--fail-open-namespaces=kube-system,monitoring", "--engine-namespace=sec"} {
					if !slices.Contains(nri.Command, want) {
						t.Errorf("nri command %q lacks %s", nri.Command, want)
					}
				}
			case "crio":
				install := container(pod.InitContainers, "install-hook")
				if nri != nil || install == nil {
					t.Fatalf("crio: want the install-hook init container and no nri sidecar")
				}
				for _, want := range []string{"install", "crio", "--hooks-dir=/usr/share/containers/oci/hooks.d", "--install-dir=/usr/local/libexec/holdfast",
					"--socket=/run/holdfast/engine.sock", "--fail-mode=closed", "--fail-open-namespaces=kube-system,monitoring", "--engine-namespace=sec"} {
					if !slices.Contains(install.Command, want) {
						t.Errorf("install-hook command %q lacks %s", install.Command, want)
					}
				}
				mounted := map[string]bool{}
				for _, m := range install.VolumeMounts {
					mounted[m.MountPath] = true
				}
				if !mounted["/usr/share/containers/oci/hooks.d"] || !mounted["/usr/local/libexec/holdfast"] {
					t.Errorf("install-hook mounts %+v: want the host's hooks.d and libexec at their own paths", install.VolumeMounts)
				}
			}
		})
	}
}

func TestHelmExistingConfigMap(t *testing.T) {
	out, err := runHelm(t, "template", "hf", chartDir, "--set", "policies.existingConfigMap=my-policies", "--set", "metrics.port=0")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	r := decodeManifest(t, out)
	if len(r.configMaps) != 0 {
		t.Errorf("an existing ConfigMap was named, yet the chart renders %d", len(r.configMaps))
	}
	var source *corev1.ConfigMapVolumeSource
	for _, v := range r.daemonSet.Spec.Template.Spec.Volumes {
		if v.Name == "policies" {
			source = v.ConfigMap
		}
	}
	if source == nil || source.Name != "my-policies" {
		t.Errorf("policies volume %+v: want ConfigMap my-policies", source)
	}
	engine := container(r.daemonSet.Spec.Template.Spec.Containers, "engine")
	if len(engine.Ports) != 0 || slices.ContainsFunc(engine.Command, func(a string) bool { return strings.HasPrefix(a, "--metrics-addr") }) {
		t.Errorf("metrics.port=0: want no metrics listener, got ports %+v, command %q", engine.Ports, engine.Command)
	}
}

func TestHelmRefusesBadValues(t *testing.T) {
	for _, tt := range []struct{ set, want string }{
		{"runtime=docker", "runtime"},
		{"failMode=maybe", "failMode"},
		{"metrics.port=70000", "port"},
		{"hostPaths.state=relative/dir", "state"},
	} {
		out, err := runHelm(t, "template", "hf", chartDir, "--set", tt.set)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("helm template --set %s: want an error naming %s, got %v: %s", tt.set, tt.want, err, out)
		}
	}
}

// The plain manifest is the chart rendered with its defaults (make manifest).
func TestManifestIsRenderedChart(t *testing.T) {
	want, err := exec.Command("sh", "render-manifest.sh", harness.Helm(t)).Output()
	if err != nil {
		t.Fatalf("render-manifest.sh: %v", err)
	}
	got, err := os.ReadFile(filepath.Join("kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/kubernetes/daemonset.yaml differs from the chart's rendering: run make manifest")
	}
	r := decodeManifest(t, string(got))
	if r.namespace == nil || r.namespace.Name != "holdfast-system" || container(r.daemonSet.Spec.Template.Spec.Containers, "nri") == nil {
		t.Error("the plain manifest must hold the holdfast-system Namespace and the containerd NRI sidecar")
	}
}

// The image tag the chart defaults to is the engine's version, which
// `make image` tags.
func TestChartAppVersionIsEngineVersion(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.AppVersion != daemon.Version {
		t.Errorf("Chart.yaml appVersion %q, engine version %q", chart.AppVersion, daemon.Version)
	}
}
