package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCmd runs one subcommand and returns its stdout.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(context.Background(), args, &out)
	return out.String(), err
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.Error(w, "nothing here", http.StatusNotFound)
		case "/token":
			io.WriteString(w, r.Header.Get("Authorization"))
		default:
			io.WriteString(w, "hello")
		}
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "ok", args: []string{srv.URL}, want: "hello"},
		{name: "flags before URL", args: []string{"--timeout", "2s", srv.URL}, want: "hello"},
		{name: "not 2xx", args: []string{srv.URL + "/missing"}, wantErr: "status 404 Not Found, want 2xx"},
		{name: "expected 404", args: []string{srv.URL + "/missing", "--expect-status", "404"}, want: "nothing here\n"},
		{name: "unexpected 200", args: []string{srv.URL, "--expect-status=404"}, wantErr: "want 404"},
		{name: "bearer token", args: []string{srv.URL + "/token", "--bearer-token-file", tokenFile}, want: "Bearer s3cret"},
		{name: "no URL", args: nil, wantErr: "want arguments URL"},
		{name: "bad flag", args: []string{srv.URL, "--nope"}, wantErr: "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runCmd(t, append([]string{"get"}, tc.args...)...)
			checkErr(t, err, tc.wantErr)
			if tc.wantErr == "" && got != tc.want {
				t.Errorf("stdout = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPollCountsEachRequestAndRereadsTheToken(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if r.Header.Get("Authorization") != "Bearer good" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "{}")
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("good\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd(t, "poll", srv.URL, "--interval", "10ms", "--count", "2", "--bearer-token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[1], " ok") || !strings.HasSuffix(lines[2], " ok") {
		t.Fatalf("want two ok lines, got %q", out)
	}
	if strings.Count(out, " token kid=? iat=0 exp=0\n") != 1 {
		t.Fatalf("want one line announcing the (not JWT) token, got %q", out)
	}
	// The token is read for every request: a replaced one is sent at once.
	if err := os.WriteFile(tokenFile, []byte("bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCmd(t, "poll", srv.URL, "--count", "1", "--bearer-token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, " FAIL status 401 Unauthorized") {
		t.Fatalf("want a FAIL line for the 401, got %q", out)
	}
	srv.Close()
	out, _ = runCmd(t, "poll", srv.URL, "--count", "1", "--timeout", "1s")
	if !strings.Contains(out, " FAIL ") || calls != 3 {
		t.Fatalf("a closed server must count as a FAIL (calls %d), got %q", calls, out)
	}
}

func TestGetRetriesUntilTheServerListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the server below takes the port again
	go func() {
		time.Sleep(700 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "late") }))
	}()
	url := "http://" + addr + "/"
	var out strings.Builder
	if err := get(context.Background(), []string{url}, &out); err == nil {
		t.Fatalf("get without --retry-for succeeded before the server listened")
	}
	if err := get(context.Background(), []string{url, "--retry-for", "5s"}, &out); err != nil {
		t.Fatalf("get --retry-for 5s: %v", err)
	}
	if out.String() != "late" {
		t.Fatalf("body %q, want %q", out.String(), "late")
	}
}

func TestGetTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "secure")
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := runCmd(t, "get", srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: err = %v, want a certificate error", err)
	}
	for _, flag := range [][]string{{"--ca", caFile}, {"--insecure"}} {
		got, err := runCmd(t, append([]string{"get", srv.URL}, flag...)...)
		if err != nil || got != "secure" {
			t.Errorf("get %v = %q, %v; want \"secure\", nil", flag, got, err)
		}
	}
}

func TestConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	got, err := runCmd(t, "connect", addr)
	if err != nil || got != "connected\n" {
		t.Errorf("connect to listener = %q, %v", got, err)
	}
	ln.Close()
	_, err = runCmd(t, "connect", addr, "--timeout", "1s")
	checkErr(t, err, "connection refused")
}

func TestLookupLiteral(t *testing.T) {
	got, err := runCmd(t, "lookup", "127.0.0.1")
	if err != nil || got != "127.0.0.1\n" {
		t.Errorf("lookup = %q, %v", got, err)
	}
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "data.txt")
	if _, err := runCmd(t, "write", path, "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, "write", path, "second"); err != nil {
		t.Fatal(err)
	}
	got, err := runCmd(t, "read", path)
	if err != nil || got != "second" {
		t.Errorf("read = %q, %v; want \"second\"", got, err)
	}
	_, err = runCmd(t, "read", path+".missing")
	checkErr(t, err, "no such file")
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--message", "hi there"}, pw)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading start line: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "serving on ")
	if !ok {
		t.Fatalf("start line = %q", line)
	}
	for path, want := range map[string]string{"/": "hi there", "/any/path": "hi there", "/healthz": "ok"} {
		got, err := runCmd(t, "get", "http://"+addr+path)
		if err != nil || got != want {
			t.Errorf("GET %s = %q, %v; want %q", path, got, err, want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
}

func TestSleepStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out strings.Builder
	if err := run(ctx, []string{"sleep"}, &out); err != nil || out.String() != "test-client sleeping\n" {
		t.Errorf("sleep = %q, %v", out.String(), err)
	}
}

func TestEchoAndUnknown(t *testing.T) {
	got, err := runCmd(t, "echo", "hello", "big", "world")
	if err != nil || got != "hello big world\n" {
		t.Errorf("echo = %q, %v", got, err)
	}
	_, err = runCmd(t, "frobnicate")
	checkErr(t, err, `unknown command "frobnicate"`)
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("got no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestDescribeJWTReadsTheKeyIDAndTimesButNotTheSignature(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	token := enc([]byte(`{"alg":"ES256","kid":"k-1_x"}`)) + "." + enc([]byte(`{"iat":100,"exp":700,"sub":"s"}`)) + ".c2ln"
	if got := describeJWT(token); got != "kid=k-1_x iat=100 exp=700" {
		t.Fatalf("got %q", got)
	}
	if got := describeJWT("not-a-jwt"); got != "kid=? iat=0 exp=0" {
		t.Fatalf("got %q", got)
	}
}
