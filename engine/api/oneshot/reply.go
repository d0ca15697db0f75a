package oneshot

import (
	"strings"

	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
)

// Reply is the part of the engine's Response an OpHook answer fills in.
type Reply struct {
	Error     string      `json:"error,omitempty"`
	Code      string      `json:"code,omitempty"`
	NotFound  bool        `json:"notFound,omitempty"`
	Container *Registered `json:"container,omitempty"`
	// Removed is the container an unregister removed.
	Removed *Registered `json:"removed,omitempty"`
	// Steps time the engine's handling (an older engine sends none).
	Steps Steps `json:"stepsUs,omitempty"`
}

// Registered is what an OpHook answer says of the container registered:
// what a registrar logs. It reads only these fields of the Container the
// engine sends, so a process that lives for one call decodes little.
type Registered struct {
	ID         string   `json:"id"`
	CgroupID   uint64   `json:"cgroupId,omitempty"`
	CgroupPath string   `json:"cgroupPath,omitempty"`
	Namespace  string   `json:"namespace,omitempty"`
	Pod        string   `json:"pod,omitempty"`
	Name       string   `json:"container,omitempty"`
	Policies   []string `json:"policies,omitempty"`
}

// DecodeReply reads an OpHook answer line as json.Unmarshal into Reply
// would, without encoding/json's reflection (see jsonscan).
// FuzzDecodeReply holds it to encoding/json's results.
func DecodeReply(data []byte) (Reply, error) {
	s := jsonscan.New(data)
	var r Reply
	if s.Null() {
		return r, s.End()
	}
	err := s.Object(func(key string) error {
		switch {
		case strings.EqualFold(key, "error"):
			return s.String(&r.Error)
		case strings.EqualFold(key, "code"):
			return s.String(&r.Code)
		case strings.EqualFold(key, "notFound"):
			return s.Bool(&r.NotFound)
		case strings.EqualFold(key, "container"):
			return decodeOptional(s, &r.Container)
		case strings.EqualFold(key, "removed"):
			return decodeOptional(s, &r.Removed)
		case strings.EqualFold(key, "stepsUs"):
			return r.Steps.read(s)
		}
		return s.Skip()
	})
	if err == nil {
		err = s.End()
	}
	if err != nil {
		return Reply{}, err
	}
	return r, nil
}

// decodeOptional reads a container that may be null into *c.
func decodeOptional(s *jsonscan.Scanner, c **Registered) error {
	if s.Null() {
		*c = nil
		return nil
	}
	if *c == nil {
		*c = &Registered{}
	}
	return decodeRegistered(s, *c)
}

func decodeRegistered(s *jsonscan.Scanner, c *Registered) error {
	return s.Object(func(key string) error {
		switch {
		case strings.EqualFold(key, "id"):
			return s.String(&c.ID)
		case strings.EqualFold(key, "cgroupId"):
			return s.Uint64(&c.CgroupID)
		case strings.EqualFold(key, "cgroupPath"):
			return s.String(&c.CgroupPath)
		case strings.EqualFold(key, "namespace"):
			return s.String(&c.Namespace)
		case strings.EqualFold(key, "pod"):
			return s.String(&c.Pod)
		case strings.EqualFold(key, "container"):
			return s.String(&c.Name)
		case strings.EqualFold(key, "policies"):
			return s.Strings(&c.Policies)
		}
		return s.Skip()
	})
}
