package api

import (
	"strings"

	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
)

// decodeHookReply reads an OpHook answer into the fields a hook logs, as
// json.Unmarshal into hookReply would, without encoding/json's reflection
// (see jsonscan). FuzzDecodeHookReply holds it to encoding/json's results.
func decodeHookReply(data []byte) (hookReply, error) {
	s := jsonscan.New(data)
	var r hookReply
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
			if s.Null() {
				r.Container = nil
				return nil
			}
			if r.Container == nil {
				r.Container = &Registered{}
			}
			return decodeRegistered(s, r.Container)
		}
		return s.Skip()
	})
	if err == nil {
		err = s.End()
	}
	if err != nil {
		return hookReply{}, err
	}
	return r, nil
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
