// refreg: a registry with the OCI 1.1 referrers API, for graft's tests and benchmarks.
//
// It is go-containerregistry's pkg/registry (the registry crane's own tests run against) with
// referrers support switched on and blobs kept on disk. Debian's docker-registry (distribution
// 2.8) has no referrers API, and olareg is not served by the module proxy the project uses.
//
// Usage: refreg -dir DIR [-addr 127.0.0.1:0]
// It listens on -addr (port 0: any free port), prints "listening on HOST:PORT" on stdout once it
// accepts connections, and serves until killed.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0: any free port)")
	dir := flag.String("dir", "", "directory for blobs (required)")
	quiet := flag.Bool("quiet", true, "no request log")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "refreg: -dir is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatalf("refreg: %v", err)
	}
	opts := []registry.Option{
		registry.WithReferrersSupport(true),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)),
	}
	if *quiet {
		opts = append(opts, registry.Logger(log.New(discard{}, "", 0)))
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("refreg: %v", err)
	}
	fmt.Printf("listening on %s\n", ln.Addr().String())
	os.Stdout.Sync()
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 30 * time.Second}
	log.Fatal(srv.Serve(ln))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
