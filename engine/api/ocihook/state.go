package ocihook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"unicode"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

// Size limits for what the runtime hands a hook (MaxStateSize bounds its
// stdin). CRI-O and containerd put every annotation into both, so they can
// be tens of KiB, never megabytes.
const (
	MaxStateSize  = oneshot.MaxStateSize
	maxConfigSize = 16 << 20
	maxIDLen      = 1024
)

// Stage is the OCI lifecycle stage a run acts at.
type Stage string

// Stages holdfast-oci-hook supports. The runtime does not tell a hook its
// stage, so the hooks.d file or config.json passes it as --stage.
const (
	StageCreateContainer Stage = "createContainer"
	StageCreateRuntime   Stage = "createRuntime"
	StagePoststop        Stage = "poststop"
)

// ParseStage accepts the three supported stage names.
func ParseStage(s string) (Stage, error) {
	switch st := Stage(s); st {
	case StageCreateContainer, StageCreateRuntime, StagePoststop:
		return st, nil
	}
	return "", fmt.Errorf("unknown stage %q (want %s, %s or %s)", s, StageCreateContainer, StageCreateRuntime, StagePoststop)
}

// ParseState decodes and checks the OCI state JSON the runtime writes to a
// hook's stdin. Of its annotations it keeps those Identity reads: runtimes
// put every annotation of a container there, and each container start
// waits for this decode.
func ParseState(data []byte) (*specs.State, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty OCI state on stdin")
	}
	st, err := decodeState(data)
	if err != nil {
		return nil, fmt.Errorf("malformed OCI state JSON on stdin: %w", err)
	}
	if err := checkID(st.ID); err != nil {
		return nil, fmt.Errorf("OCI state: %w", err)
	}
	if st.Pid < 0 {
		return nil, fmt.Errorf("OCI state of %s: negative pid %d", st.ID, st.Pid)
	}
	return st, nil
}

// decodeState decodes data as json.Unmarshal would into a specs.State
// (annotations aside: identity's alone), in one pass without reflection: the engine gets the state inside a request
// it has decoded already, and runtimes put every annotation in it.
func decodeState(data []byte) (*specs.State, error) {
	s := jsonscan.New(data)
	var st specs.State
	err := object(s, "the state", func(key string) error {
		switch {
		case strings.EqualFold(key, "ociVersion"):
			return field("ociVersion", s.String(&st.Version))
		case strings.EqualFold(key, "id"):
			return field("id", s.String(&st.ID))
		case strings.EqualFold(key, "status"):
			status := string(st.Status)
			err := s.String(&status)
			st.Status = specs.ContainerState(status)
			return field("status", err)
		case strings.EqualFold(key, "pid"):
			return field("pid", s.Int(&st.Pid))
		case strings.EqualFold(key, "bundle"):
			return field("bundle", s.String(&st.Bundle))
		case strings.EqualFold(key, "annotations"):
			return field("annotations", s.StringMapOf(&st.Annotations, isIdentityKey))
		}
		return s.Skip()
	})
	if err != nil {
		return nil, err
	}
	return &st, s.End()
}

// object reads the top-level object, what, key by key; a top-level null
// reads nothing, as with encoding/json.
func object(s *jsonscan.Scanner, what string, member func(key string) error) error {
	if s.Null() {
		return nil
	}
	err := s.Object(member)
	if err == nil || errors.Is(err, jsonscan.ErrSyntax) || errors.As(err, new(*fieldError)) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// field names the field whose value had the wrong type, below name when
// it is in an object; a syntax error names its byte offset already.
func field(name string, err error) error {
	if err == nil || errors.Is(err, jsonscan.ErrSyntax) {
		return err
	}
	if fe := new(*fieldError); errors.As(err, fe) {
		(*fe).name = name + "." + (*fe).name
		return err
	}
	return &fieldError{name: name, err: err}
}

// fieldError is a value of the wrong type in a named field.
type fieldError struct {
	name string
	err  error
}

func (e *fieldError) Error() string { return e.name + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// ReadState reads the state from r, refusing more than MaxStateSize bytes.
func ReadState(r io.Reader) (*specs.State, error) {
	data, err := linux.ReadLimited(r, MaxStateSize, "OCI state on stdin")
	if err != nil {
		return nil, err
	}
	return ParseState(data)
}

// checkID refuses ids that cannot be a container's: empty, huge, or with
// control characters that would corrupt log lines.
func checkID(id string) error {
	if id == "" {
		return errors.New("container id is empty")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("container id is %d bytes long (max %d)", len(id), maxIDLen)
	}
	if i := strings.IndexFunc(id, unicode.IsControl); i >= 0 {
		return fmt.Errorf("container id %q contains a control character", id)
	}
	return nil
}

// CheckCreateState checks the fields a create stage needs.
func CheckCreateState(st *specs.State, stage Stage) error {
	switch st.Status {
	case specs.StateCreating, specs.StateCreated:
	default:
		return fmt.Errorf("container %s has status %q at stage %s, want %q", st.ID, st.Status, stage, specs.StateCreating)
	}
	if st.Bundle == "" {
		return fmt.Errorf("OCI state of %s has no bundle", st.ID)
	}
	if !filepath.IsAbs(st.Bundle) {
		return fmt.Errorf("OCI state of %s: bundle %q is not an absolute path", st.ID, st.Bundle)
	}
	if stage == StageCreateRuntime && st.Pid <= 0 {
		return fmt.Errorf("OCI state of %s has no pid at stage %s", st.ID, stage)
	}
	return nil
}

// BundleConfig is the part of a bundle's config.json the hook reads. It
// decodes only these fields so that unrelated parts of a newer spec cannot
// make the hook fail, and of the annotations only those Identity reads.
type BundleConfig struct {
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       *struct {
		CgroupsPath string `json:"cgroupsPath,omitempty"`
	} `json:"linux,omitempty"`
	Root *struct {
		Path string `json:"path"`
	} `json:"root,omitempty"`
	Process *struct {
		Args []string `json:"args,omitempty"`
	} `json:"process,omitempty"`
}

// Rootfs is root.path made absolute against the bundle (OCI allows a path
// relative to it), or "".
func (c *BundleConfig) Rootfs(bundle string) string {
	if c == nil || c.Root == nil || c.Root.Path == "" {
		return ""
	}
	if filepath.IsAbs(c.Root.Path) {
		return filepath.Clean(c.Root.Path)
	}
	return filepath.Join(bundle, c.Root.Path)
}

// Args is process.args, or nil.
func (c *BundleConfig) Args() []string {
	if c == nil || c.Process == nil {
		return nil
	}
	return c.Process.Args
}

// CgroupsPath is linux.cgroupsPath, or "".
func (c *BundleConfig) CgroupsPath() string {
	if c == nil || c.Linux == nil {
		return ""
	}
	return c.Linux.CgroupsPath
}

// ParseBundleConfig decodes config.json contents.
func ParseBundleConfig(data []byte) (*BundleConfig, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("config.json is empty")
	}
	c, err := decodeBundleConfig(data)
	if err != nil {
		return nil, fmt.Errorf("malformed config.json: %w", err)
	}
	return c, nil
}

// decodeBundleConfig decodes data as json.Unmarshal would into a
// BundleConfig (annotations aside: identity's alone), in one pass that builds nothing of the fields it skips: a
// runc spec is mostly mounts, capabilities and namespaces the engine never
// reads, and encoding/json spent more on them than the rest of a hook run
// did.
func decodeBundleConfig(data []byte) (*BundleConfig, error) {
	s := jsonscan.New(data)
	var c BundleConfig
	// only reads the member called name with read and skips any other.
	only := func(key, name string, read func() error) error {
		if strings.EqualFold(key, name) {
			return field(name, read())
		}
		return s.Skip()
	}
	err := object(s, "config.json", func(key string) error {
		switch {
		case strings.EqualFold(key, "annotations"):
			return field("annotations", s.StringMapOf(&c.Annotations, isIdentityKey))
		case strings.EqualFold(key, "linux"):
			return field("linux", jsonscan.Optional(s, &c.Linux, func(key string) error {
				return only(key, "cgroupsPath", func() error { return s.String(&c.Linux.CgroupsPath) })
			}))
		case strings.EqualFold(key, "root"):
			return field("root", jsonscan.Optional(s, &c.Root, func(key string) error {
				return only(key, "path", func() error { return s.String(&c.Root.Path) })
			}))
		case strings.EqualFold(key, "process"):
			return field("process", jsonscan.Optional(s, &c.Process, func(key string) error {
				return only(key, "args", func() error { return s.Strings(&c.Process.Args) })
			}))
		}
		return s.Skip()
	})
	if err != nil {
		return nil, err
	}
	return &c, s.End()
}

// ReadBundleConfig reads bundle/config.json.
func ReadBundleConfig(bundle string) (*BundleConfig, error) {
	path := filepath.Join(bundle, "config.json")
	// Not os.Open: a FIFO put there would block the engine's open for good.
	data, err := linux.ReadRegularFile(path, maxConfigSize, "bundle config "+path)
	if err != nil {
		if errors.Is(err, linux.ErrTooLarge) {
			return nil, err
		}
		return nil, fmt.Errorf("read bundle config: %w", err)
	}
	c, err := ParseBundleConfig(data)
	if err != nil {
		return nil, fmt.Errorf("bundle config %s: %w", path, err)
	}
	return c, nil
}
