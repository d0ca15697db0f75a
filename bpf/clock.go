package bpf

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// bootClock reads CLOCK_BOOTTIME, the clock of event timestamps, by running
// a tiny BPF_PROG_TYPE_SYSCALL program that calls bpf_ktime_get_boot_ns.
// That keeps the conversion exact without a raw clock_gettime in this package.
type bootClock struct {
	prog *ebpf.Program
}

func newBootClock() (*bootClock, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "holdfast_clock",
		Type:    ebpf.Syscall,
		Flags:   sleepableFlag,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.FnKtimeGetBootNs.Call(),
			asm.StoreMem(asm.R6, 0, asm.R0, asm.DWord),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load boot clock program: %w", err)
	}
	return &bootClock{prog: prog}, nil
}

// sleepableFlag is BPF_F_SLEEPABLE, which syscall programs require.
const sleepableFlag = 1 << 4

// now returns the boot clock and the wall clock read around it.
func (c *bootClock) now() (time.Duration, time.Time, error) {
	var in, out [8]byte
	before := time.Now()
	if _, err := c.prog.Run(&ebpf.RunOptions{Context: in[:], ContextOut: out[:]}); err != nil {
		return 0, time.Time{}, fmt.Errorf("read boot clock: %w", err)
	}
	after := time.Now()
	wall := before.Add(after.Sub(before) / 2)
	return time.Duration(binary.NativeEndian.Uint64(out[:])), wall, nil
}

// wallTime converts a CLOCK_BOOTTIME stamp to wall-clock time.
func (c *bootClock) wallTime(stamp time.Duration) (time.Time, error) {
	boot, wall, err := c.now()
	if err != nil {
		return time.Time{}, err
	}
	return wall.Add(stamp - boot).Round(0), nil
}

func (c *bootClock) close() error { return c.prog.Close() }
