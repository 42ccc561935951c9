package hostdns

import (
	"errors"
	"net/netip"
	"strings"
)

// recordSuffix names this program's resolvconf records: DEV.mobikevpn.
const recordSuffix = ".mobikevpn"

func addrStrings(servers []netip.Addr) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.String()
	}
	return out
}

// applyResolved sets the servers on dev's link in systemd-resolved.
func (m *Manager) applyResolved(dev string, servers []netip.Addr, routeAll bool) error {
	// Another device, or a full tunnel becoming a split one: start from a clean link
	// (the routing domain and default route of the full tunnel must go).
	if m.dev != "" && (m.dev != dev || m.routeAll && !routeAll) {
		if err := m.revertResolved(); err != nil {
			return err
		}
	}
	if err := m.run(nil, append([]string{"dns", dev}, addrStrings(servers)...)...); err != nil {
		return err
	}
	m.applied(dev, servers, routeAll)
	if !routeAll {
		return nil
	}
	if err := m.run(nil, "domain", dev, "~."); err != nil {
		return err
	}
	return m.run(nil, "default-route", dev, "yes")
}

// revertResolved drops everything set on the link. A device that is gone took its
// settings with it.
func (m *Manager) revertResolved() error {
	if err := m.run(nil, "revert", m.dev); err != nil {
		if m.linkExists(m.dev) {
			return err
		}
		m.log.Debug("host DNS: the device is gone, and its settings with it", "dev", m.dev, "err", err)
	}
	m.cleared()
	return nil
}

// applyResolvconf adds (or replaces) the record DEV.mobikevpn.
func (m *Manager) applyResolvconf(dev string, servers []netip.Addr, routeAll bool) error {
	// Another device, or a change of exclusivity: delete the old record first.
	if m.dev != "" && (m.dev != dev || m.routeAll != routeAll) {
		if err := m.revertResolvconf(); err != nil {
			return err
		}
	}
	var b strings.Builder
	b.WriteString("# mobikevpn: DNS servers of the VPN on " + dev + "\n")
	for _, s := range servers {
		b.WriteString("nameserver " + s.String() + "\n")
	}
	// The flags after the record's name, as wg-quick passes them: openresolv takes
	// them there, Debian's resolvconf looks at its first two arguments only.
	args := []string{"-a", dev + recordSuffix}
	if routeAll && m.openresolv {
		args = append(args, "-x")
	}
	if err := m.run([]byte(b.String()), args...); err != nil {
		return err
	}
	m.applied(dev, servers, routeAll)
	return nil
}

// revertResolvconf deletes the record (-f: a missing one is no error).
func (m *Manager) revertResolvconf() error {
	if err := m.run(nil, "-d", m.dev+recordSuffix, "-f"); err != nil {
		return err
	}
	m.cleared()
	return nil
}

// recoverResolvconf deletes the records DEV.mobikevpn whose device is gone: those a
// daemon killed before its Revert left (a live daemon's device exists). Both Debian's
// resolvconf and openresolv list the records with -i.
func (m *Manager) recoverResolvconf() (bool, error) {
	out, err := m.output(nil, "-i")
	if err != nil {
		return false, err
	}
	var errs []error
	deleted := false
	for _, rec := range strings.Fields(string(out)) {
		dev, ok := strings.CutSuffix(rec, recordSuffix)
		if !ok || dev == "" || dev == m.dev || m.linkExists(dev) {
			continue
		}
		if err := m.run(nil, "-d", rec, "-f"); err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("host DNS: deleted the resolvconf record of a previous run", "record", rec)
		deleted = true
	}
	return deleted, errors.Join(errs...)
}
