package hook_test

import (
	"testing"

	"github.com/holdfast-dev/holdfast/hook"
	"github.com/holdfast-dev/holdfast/hook/hooksd"
)

func hooksdInstall(t *testing.T, bin, hooksDir, installDir, sock, logPath string) ([]hooksd.Change, error) {
	return hooksd.Install(hooksd.Options{HooksDir: hooksDir, InstallDir: installDir, Binary: bin, Config: hook.Config{Socket: sock, Log: logPath, FailMode: hook.FailClosed}})
}
