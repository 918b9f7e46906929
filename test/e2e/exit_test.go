package e2e

import (
	"errors"
	"os/exec"
)

// exitCode is the exit status of a command's error (0 for nil, -1 when it
// did not exit).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
