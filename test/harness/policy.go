package harness

import (
	"fmt"
	"strings"
)

// Policy is a WorkloadPolicy named name selecting by selector (the inside
// of the selector's braces, e.g. "namespaces: [shop]"); rules is the rest of
// its spec, indented as at the top of spec.
func Policy(name, selector, rules string) string {
	return fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: %s}
spec:
  selector: {%s}
  %s
`, name, selector, strings.ReplaceAll(rules, "\n", "\n  "))
}
