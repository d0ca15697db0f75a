package bpf

import (
	"encoding/binary"
	"testing"
)

// testKey is the key of the SipHash reference vectors: bytes 0x00..0x0f.
var testKey = HashKey{K0: 0x0706050403020100, K1: 0x0f0e0d0c0b0a0908}

// SipHash-2-4 reference outputs under testKey for the messages 0x00, 0x01,
// ... of the given length (the reference implementation's vectors.h). The
// programs and PathHash feed whole words, so the word-aligned ones apply.
var sipVectors = map[int]uint64{
	0:  0x726fdb47dd0e0e31,
	8:  0x93f5f5799a932462,
	16: 0x3f2acc7f57c29bdb,
	24: 0xb8ad50c6f649af94,
	32: 0x7127512f72f27cce,
	40: 0x0e3ea96b5304a7d0,
	48: 0xe612a3cb9ecba951,
	56: 0xb78dbfaf3a8d83bd,
}

func TestSipMatchesReferenceVectors(t *testing.T) {
	for n, want := range sipVectors {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i)
		}
		s := newSip(testKey)
		for i := 0; i < n; i += 8 {
			s.word(binary.LittleEndian.Uint64(msg[i:]))
		}
		if got := s.sum(); got != want {
			t.Errorf("SipHash-2-4 of %d bytes = %#x, want %#x", n, got, want)
		}
	}
}

func TestPathHashIsKeyedAndSeparatesComponents(t *testing.T) {
	other := HashKey{K0: testKey.K0 ^ 1, K1: testKey.K1}
	bin := []string{"usr", "bin", "true"}
	if PathHash(testKey, bin) == PathHash(other, bin) {
		t.Error("two keys give the same hash")
	}
	// The stream is length word, then name words, per component.
	s := newSip(testKey)
	for _, c := range bin {
		s.word(uint64(len(c)))
		var w [8]byte
		copy(w[:], c)
		s.word(binary.LittleEndian.Uint64(w[:]))
	}
	if got, want := PathHash(testKey, bin), s.sum(); got != want {
		t.Errorf("PathHash = %#x, want the SipHash of its word stream %#x", got, want)
	}
	distinct := [][]string{
		nil,
		{"usr"},
		{"usr", "bin"},
		{"usrbin"},
		{"usr/bin"},
		{"a", "b"},
		{"ab"},
		{"abcdefgh"},
		{"abcdefgh", ""},
		{"abcdefg"},
		{"abcdefghi"},
	}
	seen := map[uint64][]string{}
	for _, c := range distinct {
		h := PathHash(testKey, c)
		if prev, dup := seen[h]; dup {
			t.Errorf("%q and %q hash alike", prev, c)
		}
		seen[h] = c
	}
}
