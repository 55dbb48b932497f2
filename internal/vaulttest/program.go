package vaulttest

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Program lets these helpers run outside a test (the bench and cluster
// commands): Fatal exits after running the cleanups, from any goroutine,
// once.
type Program struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	once     sync.Once
}

// NewProgram is a Program that also removes the plugin build it makes, and
// stops on Ctrl-C or SIGTERM: the cleanups run (Vault and its plugins are
// stopped), then the program exits.
func NewProgram() *Program {
	m := &Program{}
	m.Cleanup(RemoveBuild)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		m.Logf("stopping: %v", <-signals)
		m.RunCleanups()
		os.Exit(0)
	}()
	return m
}

func (m *Program) Helper()                         {}
func (m *Program) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (m *Program) Cleanup(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cleanups = append(m.cleanups, f)
}
func (m *Program) Failed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed
}
func (m *Program) Skipf(format string, args ...any) { m.Fatalf(format, args...) }
func (m *Program) Fatal(args ...any)                { m.Fatalf("%s", fmt.Sprint(args...)) }
func (m *Program) Fatalf(format string, args ...any) {
	m.mu.Lock()
	m.failed = true
	m.mu.Unlock()
	m.Logf(format, args...)
	m.RunCleanups()
	os.Exit(1)
}

// RunCleanups runs the cleanups, newest first, once; another caller (a second
// failing goroutine) waits until they are done, so none exits before Vault
// is stopped.
func (m *Program) RunCleanups() {
	m.once.Do(func() {
		m.mu.Lock()
		cleanups := m.cleanups
		m.mu.Unlock()
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	})
}
