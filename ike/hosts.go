package ike

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Gateways named by host name (remote_addrs: [vpn.example.org]). The engine does no
// I/O: a connection kept up (keepup.go) that has host names asks for them to be
// resolved (the Resolve action) before each attempt, and starts once Resolved brings
// the answer; every A and AAAA record is a candidate address (tried in turn while the
// IKE_SA_INIT gets no answer, RFC 4555 3.1, and a peer address MOBIKE may use). With
// certificates, the gateway reached by a host name must hold it as a DNS
// subjectAltName.

// Resolve asks the driver to resolve the host names of connection Conn and to hand
// every address found to Engine.Resolved.
type Resolve struct {
	Conn  string
	Hosts []string
}

func (Resolve) action() {}

// resolvedHosts are a connection's host names' addresses, by host name in the order
// of the connection's RemoteHosts.
type resolvedHosts map[string][]netip.Addr

// Resolved hands the engine the addresses of connection name's host names (err: the
// resolution failed). A connection waiting for them to keep itself up starts now, or
// tries again after its backoff when nothing was found.
func (e *Engine) Resolved(now time.Time, name string, addrs map[string][]netip.Addr, err error) []Action {
	conn := e.conns[name]
	if conn == nil {
		return nil
	}
	if err == nil {
		found := resolvedHosts{}
		for _, h := range conn.RemoteHosts {
			for _, a := range addrs[h] {
				if a = a.Unmap(); a.IsValid() && !slices.Contains(found[h], a) {
					found[h] = append(found[h], a)
				}
			}
		}
		if len(found) == 0 {
			err = fmt.Errorf("no address for %v", conn.RemoteHosts)
		} else {
			if e.hostAddrs == nil {
				e.hostAddrs = make(map[string]resolvedHosts)
			}
			e.hostAddrs[name] = found
		}
	}
	waiting := e.resolving[name]
	delete(e.resolving, name)
	switch {
	case !waiting:
	case err != nil:
		e.log.Warn("cannot resolve the gateway's host name", "conn", name, "hosts", conn.RemoteHosts, "err", err)
		e.scheduleRetry(now, name, "resolving "+fmt.Sprint(conn.RemoteHosts))
	case !e.connActive(name):
		e.keepUpResolved(now, conn, "start")
	}
	return e.take()
}

// resolveFirst asks for conn's host names to be resolved before it is kept up; it
// reports false for a connection without host names.
func (e *Engine) resolveFirst(conn *Conn) bool {
	if len(conn.RemoteHosts) == 0 {
		return false
	}
	if e.resolving == nil {
		e.resolving = make(map[string]bool)
	}
	if !e.resolving[conn.Name] {
		e.resolving[conn.Name] = true
		e.emit(Resolve{Conn: conn.Name, Hosts: slices.Clone(conn.RemoteHosts)})
	}
	return true
}

// peerAddrs are the addresses conn may initiate to: its literal remote addresses, then
// those its host names resolved to.
func (e *Engine) peerAddrs(conn *Conn) []netip.Addr {
	if len(conn.RemoteHosts) == 0 {
		return conn.RemoteAddrs
	}
	out := slices.Clone(conn.RemoteAddrs)
	found := e.hostAddrs[conn.Name]
	for _, h := range conn.RemoteHosts {
		for _, a := range found[h] {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// hostOf is the host name of conn that resolved to a, if any.
func (e *Engine) hostOf(conn *Conn, a netip.Addr) string {
	if slices.Contains(conn.RemoteAddrs, a) {
		return ""
	}
	found := e.hostAddrs[conn.Name]
	for _, h := range conn.RemoteHosts {
		if slices.Contains(found[h], a) {
			return h
		}
	}
	return ""
}

// connName is the name of sa's connection ("" for none).
func connName(sa *IKESA) string {
	if sa.conn == nil {
		return ""
	}
	return sa.conn.Name
}
