package hook_test

import (
	"os"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
