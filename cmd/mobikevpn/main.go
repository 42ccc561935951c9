// Command mobikevpn is a userspace IKEv2/IPsec VPN with MOBIKE: the daemon (run) and
// the commands that control a running daemon over its control socket.
package main

import "os"

// Set at build time: go build -ldflags "-X main.version=1.2.3 -X main.commit=abc123".
var (
	version string
	commit  string
)

func main() {
	os.Exit(runApp(os.Args, os.Stdout, os.Stderr))
}
