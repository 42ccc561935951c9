package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mobikevpn/mobikevpn/internal/pki"
)

// pkiCommand is `mobikevpn pki ca|gateway|client`; cmd is cliApp's command wrapper.
func (a *app) pkiCommand(cmd func(*cli.Command) *cli.Command) *cli.Command {
	dir := func() cli.Flag {
		return &cli.StringFlag{Name: "dir", Usage: "the `DIR` of the CA's files (ca.pem, ca.key) and the certificates", TakesFile: true}
	}
	force := func() cli.Flag { return &cli.BoolFlag{Name: "force", Usage: "overwrite existing files"} }
	days := func(n int) cli.Flag {
		return &cli.IntFlag{Name: "days", Value: n, Usage: "valid for `N` days"}
	}
	return cmd(&cli.Command{
		Name:  "pki",
		Usage: "make a CA, gateway and client certificates and keys for a first set-up",
		Subcommands: []*cli.Command{
			cmd(&cli.Command{
				Name:      "ca",
				Usage:     "make a CA: DIR/ca.pem and its key DIR/ca.key (ECDSA P-256)",
				UsageText: "mobikevpn pki ca --dir DIR [--cn NAME] [--days N] [--force]",
				Flags: []cli.Flag{dir(), &cli.StringFlag{Name: "cn", Value: pki.DefaultCAName, Usage: "the CA's common `NAME`"},
					days(pki.DefaultCADays), force()},
				Action: a.cmdPKICA,
			}),
			cmd(&cli.Command{
				Name:      "gateway",
				Usage:     "make a gateway certificate signed by the CA of DIR: DIR/NAME.pem and DIR/NAME.key",
				UsageText: "mobikevpn pki gateway --dir DIR --name NAME [--ip ADDR ...] [--days N] [--force]",
				Flags: []cli.Flag{dir(),
					&cli.StringFlag{Name: "name", Usage: "the gateway's host `NAME` (or IP address): subject CN and subjectAltName"},
					&cli.StringSliceFlag{Name: "ip", Usage: "an IP `ADDR` of the gateway, as a subjectAltName too (repeat or comma-separate)"},
					days(pki.DefaultLeafDays), force()},
				Action: a.cmdPKIGateway,
			}),
			cmd(&cli.Command{
				Name:      "client",
				Usage:     "make a client certificate signed by the CA of DIR: DIR/NAME.pem and DIR/NAME.key",
				UsageText: "mobikevpn pki client --dir DIR --name NAME [--days N] [--force]",
				Flags: []cli.Flag{dir(),
					&cli.StringFlag{Name: "name", Usage: "the client's `NAME`: an email address (alice@example.org) or a host name"},
					days(pki.DefaultLeafDays), force()},
				Action: a.cmdPKIClient,
			}),
		},
	})
}

// pkiArgs checks what every pki command takes: the common flags, no arguments, --dir
// and --days.
func (a *app) pkiArgs(c *cli.Context) (dir string, days int, err error) {
	if err := a.common(c); err != nil {
		return "", 0, err
	}
	if err := noArgs(c); err != nil {
		return "", 0, err
	}
	what := "pki " + c.Command.Name
	if dir = c.String("dir"); dir == "" {
		return "", 0, usageErr("%s needs --dir DIR, the folder of the CA's files", what)
	}
	if days = c.Int("days"); days < 1 || days > pki.MaxDays {
		return "", 0, usageErr("%s --days %d: the validity must be 1 to %d days", what, days, pki.MaxDays)
	}
	return dir, days, nil
}

// pkiFailed maps an error of package pki: bad input is a usage error, an existing file
// asks for --force, anything else failed.
func pkiFailed(what string, err error) error {
	var ie *pki.InputError
	switch {
	case errors.As(err, &ie):
		return usageErr("%s: %v", what, err)
	case errors.Is(err, fs.ErrExist):
		return failed("%s: %v; use --force to overwrite it", what, err)
	}
	return failed("%s: %v", what, err)
}

// pkiName reads --name.
func pkiName(c *cli.Context) (string, error) {
	name := c.String("name")
	if name == "" {
		return "", usageErr("pki %s needs --name NAME", c.Command.Name)
	}
	if err := pki.CheckName(name); err != nil {
		return "", usageErr("pki %s --name: %v", c.Command.Name, err)
	}
	return name, nil
}

func (a *app) cmdPKICA(c *cli.Context) error {
	dir, days, err := a.pkiArgs(c)
	if err != nil {
		return err
	}
	ca, err := pki.NewCA(rand.Reader, time.Now(), c.String("cn"), days)
	if err != nil {
		return pkiFailed("pki ca", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return failed("pki ca: %v", err)
	}
	files := []pki.File{
		{Path: filepath.Join(dir, pki.CAKeyFile), Data: ca.KeyPEM, Mode: pki.KeyMode},
		{Path: filepath.Join(dir, pki.CACertFile), Data: ca.CertPEM, Mode: pki.CertMode},
	}
	if err := pki.WriteFiles(files, c.Bool("force")); err != nil {
		return pkiFailed("pki ca", err)
	}
	w := a.stdout
	fmt.Fprintf(w, "wrote %s: CA certificate %q, valid until %s\n", files[1].Path, ca.Cert.Subject.String(), day(ca.Cert.NotAfter))
	fmt.Fprintf(w, "wrote %s: its private key (mode 0600); keep it secret, it signs every certificate\n", files[0].Path)
	fmt.Fprintf(w, "next: mobikevpn pki gateway --dir %s --name gw.example.org [--ip ADDR]\n", dir)
	fmt.Fprintf(w, "      mobikevpn pki client --dir %s --name alice@example.org\n", dir)
	return nil
}

func (a *app) cmdPKIGateway(c *cli.Context) error {
	dir, days, err := a.pkiArgs(c)
	if err != nil {
		return err
	}
	name, err := pkiName(c)
	if err != nil {
		return err
	}
	var ips []netip.Addr
	for _, s := range c.StringSlice("ip") {
		ip, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || ip.Zone() != "" {
			return usageErr("pki gateway --ip %q: not an IP address", s)
		}
		ips = append(ips, ip)
	}
	is, err := a.pkiIssue(c, dir, name, func(ca *pki.Issued) (*pki.Issued, error) {
		return pki.NewGateway(rand.Reader, time.Now(), ca, name, ips, days)
	})
	if err != nil {
		return err
	}
	w := a.stdout
	fmt.Fprintf(w, "gateway configuration (paths are relative to the configuration file; copy %s.pem, %s.key and ca.pem next to it):\n", name, name)
	fmt.Fprintf(w, "    local:  { auth: pubkey, certs: [%s], key: %s }\n", yamlScalar(name+".pem"), yamlScalar(name+".key"))
	fmt.Fprintf(w, "    remote: { auth: pubkey, cacerts: [%s] }\n", pki.CACertFile)
	fmt.Fprintf(w, "a client's configuration names it: remote: { auth: pubkey, id: %s, cacerts: [%s] }\n", yamlScalar(is.Cert.Subject.CommonName), pki.CACertFile)
	return nil
}

func (a *app) cmdPKIClient(c *cli.Context) error {
	dir, days, err := a.pkiArgs(c)
	if err != nil {
		return err
	}
	name, err := pkiName(c)
	if err != nil {
		return err
	}
	var gateways []string
	_, err = a.pkiIssue(c, dir, name, func(ca *pki.Issued) (*pki.Issued, error) {
		gateways = pki.Gateways(dir, ca.Cert)
		return pki.NewClient(rand.Reader, time.Now(), ca, name, days)
	})
	if err != nil {
		return err
	}
	gw, note := "GATEWAY", "  # GATEWAY: the gateway's --name (mobikevpn pki gateway)"
	switch len(gateways) {
	case 1:
		gw, note = yamlScalar(gateways[0]), ""
	case 0:
	default:
		note = "  # GATEWAY: one of " + strings.Join(gateways, ", ")
	}
	w := a.stdout
	fmt.Fprintf(w, "client configuration (paths are relative to the configuration file; copy %s.pem, %s.key and ca.pem next to it):\n", name, name)
	fmt.Fprintf(w, "    local:  { auth: pubkey, id: %s, certs: [%s], key: %s }\n", yamlScalar(name), yamlScalar(name+".pem"), yamlScalar(name+".key"))
	fmt.Fprintf(w, "    remote: { auth: pubkey, id: %s, cacerts: [%s] }%s\n", gw, pki.CACertFile, note)
	return nil
}

// pkiIssue loads the CA of dir, makes a certificate with newCert, writes it as
// dir/name.pem and dir/name.key and says so.
func (a *app) pkiIssue(c *cli.Context, dir, name string, newCert func(ca *pki.Issued) (*pki.Issued, error)) (*pki.Issued, error) {
	what := "pki " + c.Command.Name
	ca, err := pki.LoadCA(filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, failed("%s: %v (make the CA first: mobikevpn pki ca --dir %s)", what, err, dir)
	}
	if err != nil {
		return nil, failed("%s: the CA: %v", what, err)
	}
	is, err := newCert(ca)
	if err != nil {
		return nil, pkiFailed(what, err)
	}
	files := is.Files(dir, name)
	if err := pki.WriteFiles(files, c.Bool("force")); err != nil {
		return nil, pkiFailed(what, err)
	}
	fmt.Fprintf(a.stdout, "wrote %s: %s certificate %q (%s), issued by %q, valid until %s\n", files[1].Path, c.Command.Name,
		is.Cert.Subject.String(), pki.SANs(is.Cert), ca.Cert.Subject.String(), day(is.Cert.NotAfter))
	fmt.Fprintf(a.stdout, "wrote %s: its private key (mode 0600)\n", files[0].Path)
	return is, nil
}

// yamlScalar quotes s for a YAML flow collection when it needs it (an IPv6 address).
func yamlScalar(s string) string {
	if strings.ContainsAny(s, ":#,[]{}\"'") {
		return strconv.Quote(s)
	}
	return s
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }
