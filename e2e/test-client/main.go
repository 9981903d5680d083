// Command test-client is the probe the e2e tests run inside pods: HTTP gets, DNS lookups,
// TCP connects, a tiny HTTP server and file round-trips, each as one subcommand.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: test-client COMMAND [ARGS]
  get URL [--timeout 5s] [--insecure] [--ca FILE] [--bearer-token-file FILE] [--expect-status N] [--retry-for 0s]
  poll URL [--interval 1s] [--timeout 5s] [--ca FILE] [--bearer-token-file FILE] [--count 0]
  lookup NAME [--timeout 5s]
  connect HOST:PORT [--timeout 3s]
  serve [--addr :8080] [--message TEXT]
  sleep
  write PATH CONTENT
  read PATH
  echo ARGS...`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "test-client: %v\n", err)
		os.Exit(1)
	}
}

// run executes one subcommand. ctx is cancelled by SIGTERM/SIGINT.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(`no command given (see "test-client help")`)
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "get":
		err = get(ctx, args, stdout)
	case "poll":
		err = poll(ctx, args, stdout)
	case "lookup":
		err = lookup(ctx, args, stdout)
	case "connect":
		err = connect(ctx, args, stdout)
	case "serve":
		err = serve(ctx, args, stdout)
	case "sleep":
		err = sleep(ctx, args, stdout)
	case "write":
		err = write(args)
	case "read":
		err = read(args, stdout)
	case "echo":
		_, err = fmt.Fprintln(stdout, strings.Join(args, " "))
	case "help", "-h", "--help":
		_, err = fmt.Fprintln(stdout, usage)
	default:
		return fmt.Errorf(`unknown command %q (see "test-client help")`, cmd)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

// parse parses flags given before, between or after the positional arguments, which
// the flag package alone does not allow (it stops at the first positional one).
func parse(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(positional) {
		return nil, fmt.Errorf("want arguments %s, got %q", strings.Join(positional, " "), pos)
	}
	return pos, nil
}

func get(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "whole request timeout")
	insecure := fs.Bool("insecure", false, "skip TLS certificate verification")
	caFile := fs.String("ca", "", "PEM file with the CA certificates to trust")
	tokenFile := fs.String("bearer-token-file", "", "file holding a bearer token to send")
	expect := fs.Int("expect-status", 0, "the only status accepted (default: any 2xx)")
	retryFor := fs.Duration("retry-for", 0, "retry connection errors this long (a Service's rules may lag its endpoints)")
	pos, err := parse(fs, args, "URL")
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{InsecureSkipVerify: *insecure}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no PEM certificates in %s", *caFile)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pos[0], nil)
	if err != nil {
		return err
	}
	if *tokenFile != "" {
		token, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	// No proxy from the environment: the probe must test the direct network path.
	client := &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: nil},
	}
	deadline := time.Now().Add(*retryFor)
	resp, err := client.Do(req)
	for err != nil && time.Now().Before(deadline) {
		fmt.Fprintf(os.Stderr, "test-client: get: %v; retrying\n", err)
		time.Sleep(500 * time.Millisecond)
		resp, err = client.Do(req.Clone(ctx))
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading body of %s: %w", pos[0], err)
	}
	ok, want := resp.StatusCode/100 == 2, "2xx"
	if *expect != 0 {
		ok, want = resp.StatusCode == *expect, fmt.Sprint(*expect)
	}
	if !ok {
		return fmt.Errorf("%s: status %s, want %s; body: %s", pos[0], resp.Status, want, oneLine(body, 200))
	}
	_, err = stdout.Write(body)
	return err
}

// poll GETs URL every interval until cancelled (or count requests), as a client of the tenant's
// API would: one keep-alive client, the token and CA files read again for every request (the
// kubelet rotates the token, a CA rotation changes the CA). Each request prints one line,
// "<time> ok" or "<time> FAIL <why>", so a test counts the failures in the log; a token not sent
// before is announced first by "<time> token kid=<key id> iat=<unix> exp=<unix>" (from its JWT
// header and claims; the token itself is never printed).
func poll(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	interval := fs.Duration("interval", time.Second, "time between requests")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each request")
	caFile := fs.String("ca", "", "PEM file with the CA certificates to trust (read for every request)")
	tokenFile := fs.String("bearer-token-file", "", "file holding a bearer token (read for every request)")
	count := fs.Int("count", 0, "stop after this many requests (0: until cancelled)")
	pos, err := parse(fs, args, "URL")
	if err != nil {
		return err
	}
	p := poller{url: pos[0], timeout: *timeout, caFile: *caFile, tokenFile: *tokenFile}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; *count == 0 || n <= *count; n++ {
		line := "ok"
		if news := p.tokenNews(); news != "" {
			if _, err := fmt.Fprintf(stdout, "%s %s\n", time.Now().UTC().Format(time.RFC3339), news); err != nil {
				return err
			}
		}
		if err := p.once(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			line = "FAIL " + strings.Join(strings.Fields(err.Error()), " ")
		}
		if _, err := fmt.Fprintf(stdout, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line); err != nil {
			return err
		}
		if *count != 0 && n == *count {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// poller is poll's client: kept across requests, made anew when the CA file changes.
type poller struct {
	url, caFile, tokenFile string
	timeout                time.Duration
	client                 *http.Client
	caPEM                  []byte
	lastToken              string
}

// tokenNews describes the token about to be sent when it is not the last one ("" otherwise).
func (p *poller) tokenNews() string {
	if p.tokenFile == "" {
		return ""
	}
	raw, err := os.ReadFile(p.tokenFile)
	token := strings.TrimSpace(string(raw))
	if err != nil || token == p.lastToken {
		return ""
	}
	p.lastToken = token
	return "token " + describeJWT(token)
}

// describeJWT says "kid=K iat=N exp=N" of a JWT, without checking its signature ("kid=? ..."
// for what it cannot read).
func describeJWT(token string) string {
	var header struct {
		Kid string `json:"kid"`
	}
	var claims struct {
		Iat int64 `json:"iat"`
		Exp int64 `json:"exp"`
	}
	parts := strings.Split(token, ".")
	decode := func(i int, into any) {
		if i >= len(parts) {
			return
		}
		if b, err := base64.RawURLEncoding.DecodeString(parts[i]); err == nil {
			_ = json.Unmarshal(b, into)
		}
	}
	decode(0, &header)
	decode(1, &claims)
	if header.Kid == "" {
		header.Kid = "?"
	}
	return fmt.Sprintf("kid=%s iat=%d exp=%d", header.Kid, claims.Iat, claims.Exp)
}

func (p *poller) once(ctx context.Context) error {
	if p.caFile != "" {
		pem, err := os.ReadFile(p.caFile)
		if err != nil {
			return err
		}
		if p.client == nil || string(pem) != string(p.caPEM) {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("no PEM certificates in %s", p.caFile)
			}
			p.caPEM = pem
			p.client = &http.Client{Timeout: p.timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil}}
		}
	} else if p.client == nil {
		p.client = &http.Client{Timeout: p.timeout, Transport: &http.Transport{Proxy: nil}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	if p.tokenFile != "" {
		token, err := os.ReadFile(p.tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %s: %s", resp.Status, oneLine(body, 200))
	}
	return nil
}

// oneLine shortens a response body so that an error stays on one line.
func oneLine(b []byte, limit int) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func lookup(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("lookup", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "lookup timeout")
	pos, err := parse(fs, args, "NAME")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resolver := &net.Resolver{PreferGo: true}
	addrs, err := resolver.LookupHost(ctx, pos[0])
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if _, err := fmt.Fprintln(stdout, a); err != nil {
			return err
		}
	}
	return nil
}

func connect(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "connect timeout")
	pos, err := parse(fs, args, "HOST:PORT")
	if err != nil {
		return err
	}
	dialer := &net.Dialer{Timeout: *timeout}
	conn, err := dialer.DialContext(ctx, "tcp", pos[0])
	if err != nil {
		return err
	}
	conn.Close()
	_, err = fmt.Fprintln(stdout, "connected")
	return err
}

func serve(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "listen address")
	message := fs.String("message", "", "response body (default: the hostname)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *message == "" {
		host, err := os.Hostname()
		if err != nil {
			return err
		}
		*message = host
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler(*message), ReadHeaderTimeout: 10 * time.Second}
	if _, err := fmt.Fprintln(stdout, "serving on", ln.Addr()); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func handler(message string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, message) })
	return mux
}

func sleep(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments, got %q", args)
	}
	if _, err := fmt.Fprintln(stdout, "test-client sleeping"); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func write(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want arguments PATH CONTENT, got %q", args)
	}
	path, content := args[0], args[1]
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// A new file survives a crash only once its directory entry is on disk too.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func read(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("want argument PATH, got %q", args)
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}
