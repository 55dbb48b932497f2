package runtimecatalog

import (
	"time"

	"github.com/runtime-catalog/vault-plugin-runtime-catalog/internal/hosting"
)

// healthData is the "health" of GET hosted/NAME: the container's figures
// now, the kernel's OOM kills, and the mount's last exits, newest first. A
// figure the engine does not give is left out and named in "unavailable",
// never shown as 0.
func healthData(h hosting.Health) map[string]interface{} {
	data := map[string]interface{}{
		"failed_starts":  h.FailedStarts,
		"restart_causes": h.RestartCauses,
	}
	var unavailable []string
	if u := h.Usage; u != nil {
		for _, f := range u.Figures() {
			data[f.Name] = f.Value
		}
		unavailable = append(unavailable, u.Missing...)
	} else if h.UsageError != "" {
		data["usage_error"] = h.UsageError
	}
	if h.OOMKillsKnown {
		data["oom_kills"] = h.OOMKills
	} else {
		unavailable = append(unavailable, "oom_kills")
	}
	if len(unavailable) > 0 {
		data["unavailable"] = unavailable
		data["unavailable_reason"] = "the container's engine does not report these (Podman sends no oom event; rootless Podman may have no memory or CPU controller)"
	}
	exits := []map[string]interface{}{}
	for _, e := range h.Exits {
		exit := map[string]interface{}{"time": e.Time.UTC().Format(time.RFC3339Nano), "exit_code": e.Code, "reason": e.Reason, "output": e.Output}
		if e.Signal != 0 {
			exit["signal"] = e.Signal
		}
		if e.Output == nil {
			exit["output"] = []string{}
		}
		exits = append(exits, exit)
	}
	data["exits"] = exits
	return data
}
