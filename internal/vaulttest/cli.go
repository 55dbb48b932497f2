package vaulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Run runs the server's CLI (vault or bao) against the server with the server's token.
func (s *Server) Run(t T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return s.RunAs(t, s.Token, args...)
}

// RunAs runs the vault CLI with another token.
func (s *Server) RunAs(t T, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return s.RunInput(t, token, nil, args...)
}

// RunInput runs the vault CLI with a token and standard input.
func (s *Server) RunInput(t T, token string, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(os.Environ(), s.Kind.CLIEnv(s.Addr, token)...)
	cmd.Stdin = stdin
	cmd.WaitDelay = 5 * time.Second // never hang on an output pipe once the CLI is gone
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = 0
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("vault %v: %v", args, err)
		}
		code = exitErr.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// MustRun runs the vault CLI and fails the test unless it exits 0.
func (s *Server) MustRun(t T, args ...string) string {
	t.Helper()
	out, errOut, code := s.Run(t, args...)
	if code != 0 {
		t.Fatalf("vault %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// MustJSON runs the vault CLI with -format=json after the subcommand and
// decodes its output.
func (s *Server) MustJSON(t T, v interface{}, args ...string) {
	t.Helper()
	withFormat := append([]string{args[0], "-format=json"}, args[1:]...)
	out := s.MustRun(t, withFormat...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vault %v: decoding %q: %v", args, out, err)
	}
}

// CompressLists lets lists through the mount at path answer with gzip, as
// the README says: the mount passes Accept-Encoding in and lets
// Content-Encoding and Vary out, and the plugin is told it may use them.
func (s *Server) CompressLists(t T, path string) {
	t.Helper()
	s.MustRun(t, "secrets", "tune", "-passthrough-request-headers=Accept-Encoding",
		"-allowed-response-headers=Content-Encoding", "-allowed-response-headers=Vary", path+"/")
	s.MustRun(t, "write", path+"/config", "compress_lists=true")
}
