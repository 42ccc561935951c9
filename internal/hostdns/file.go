package hostdns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// marker is the first line of a resolv.conf this package rewrote.
const marker = `# mobikevpn: DNS servers of the VPN; the original follows in the lines starting with "#~ ", restored when the tunnel goes down`

// The lines that keep the original in a rewritten resolv.conf.
const (
	origPrefix = "#~ "        // a line of the original
	origEmpty  = "#~"         // an empty line of the original, its trailing space lost
	endLine    = "#~! end"    // the last line: a file without it was cut short
	absentLine = "#~! absent" // there was no file
	noEOLLine  = "#~! noeol"  // the original's last line had no newline
	directive  = "#~! "       // what begins the three above
)

// maxNS is how many nameserver lines glibc (MAXNS) and musl use.
const maxNS = 3

// createMode is the mode of a resolv.conf Apply creates.
const createMode = fs.FileMode(0o644)

// original is the resolv.conf Apply found.
type original struct {
	data   []byte
	absent bool // there was no file
}

// applyFile rewrites the file with servers, keeping the original in it.
func (m *Manager) applyFile(dev string, servers []netip.Addr, routeAll bool) error {
	path := m.o.ResolvConf
	cur, absent, err := readResolvConf(path)
	if err != nil {
		return err
	}
	var orig original
	switch {
	case m.orig != nil && !absent && bytes.Equal(cur, m.written):
		orig = *m.orig // ours: only the servers change
	case !absent && isRewritten(cur):
		// A previous run's (RecoverStale not called), or ours edited by someone: its
		// original is the one to keep, not the rewritten file.
		if orig, err = parseRewritten(cur); err != nil {
			return fmt.Errorf("hostdns: file: %s starts with mobikevpn's marker but %w; not rewritten again (its original is in the lines starting with %q)", path, err, origPrefix)
		}
		m.log.Warn("host DNS: the file holds mobikevpn's rewrite that this process did not write; keeping the original it holds", "file", path)
	default:
		if m.orig != nil {
			m.log.Warn("host DNS: someone else changed the file while it held the VPN's servers; its new content is the original now", "file", path)
		}
		orig = original{data: cur, absent: absent}
	}
	content := render(servers, routeAll, orig)
	if absent || !bytes.Equal(content, cur) { // (already so: not even its mtime changes)
		if err := writeInPlace(path, content, absent); err != nil {
			if !absent {
				_ = writeInPlace(path, cur, false) // best effort: what was there
			}
			return fmt.Errorf("hostdns: file: writing %s: %w", path, err)
		}
	}
	m.orig, m.written = &orig, content
	m.applied(dev, servers, routeAll)
	if len(servers) > maxNS {
		m.log.Info("host DNS: glibc and musl use only the first 3 nameserver lines", "file", path, "servers", len(servers))
	}
	return nil
}

// revertFile restores the original, when the file still holds what applyFile wrote.
func (m *Manager) revertFile() error {
	path := m.o.ResolvConf
	cur, absent, err := readResolvConf(path)
	if err != nil {
		return err
	}
	if absent && m.orig.absent {
		m.cleared() // someone removed it: as it was before
		return nil
	}
	if absent || !bytes.Equal(cur, m.written) {
		m.cleared()
		return fmt.Errorf("hostdns: file: %s was changed by someone else while it held the VPN's DNS servers; left as it is", path)
	}
	if err := restore(path, *m.orig); err != nil {
		return err
	}
	m.cleared()
	return nil
}

// RecoverStale restores the resolv.conf a previous process left rewritten (it was killed
// before it could Revert): call at start. With resolvconf, it also deletes the records
// DEV.mobikevpn of devices that are gone. Reports whether it restored something. A file
// this Manager rewrote itself is left alone.
func (m *Manager) RecoverStale() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	restored, err := m.recoverFile()
	if m.choose(); m.backend == backendResolvconf {
		deleted, rerr := m.recoverResolvconf()
		return restored || deleted, errors.Join(err, rerr)
	}
	return restored, err
}

func (m *Manager) recoverFile() (bool, error) {
	if m.orig != nil {
		return false, nil
	}
	path := m.o.ResolvConf
	cur, absent, err := readResolvConf(path)
	if err != nil || absent || !isRewritten(cur) {
		return false, err
	}
	orig, err := parseRewritten(cur)
	if err != nil {
		return false, fmt.Errorf("hostdns: file: %s starts with mobikevpn's marker but %w; left as it is", path, err)
	}
	if err := restore(path, orig); err != nil {
		return false, err
	}
	m.log.Info("host DNS: restored the file a previous run left rewritten", "file", path)
	return true, nil
}

// restore puts the original back: its bytes, or no file.
func restore(path string, o original) error {
	if o.absent {
		// The file it points to, when path is a symbolic link: the link stays.
		target, err := filepath.EvalSymlinks(path)
		if err == nil {
			err = os.Remove(target)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("hostdns: file: removing %s (there was none): %w", path, err)
		}
		return nil
	}
	if err := writeInPlace(path, o.data, false); err != nil {
		return fmt.Errorf("hostdns: file: restoring %s: %w", path, err)
	}
	return nil
}

// readResolvConf reads the file; a missing one is absent, not an error.
func readResolvConf(path string) (data []byte, absent bool, err error) {
	data, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("hostdns: file: %w", err)
	}
	return data, false, nil
}

// writeInPlace writes data over the file at path (through a symbolic link) from its
// start, then truncates it to data's length. The file stays the same file (a bind
// mount's source, its mode and owner), and content at least as long as the old never
// leaves a moment where the file is empty. create: there is no file yet; it is made
// with mode 0644 whatever the umask (every user's resolver reads it).
func writeInPlace(path string, data []byte, create bool) error {
	flag := os.O_WRONLY
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flag, createMode)
	if err != nil {
		return err
	}
	if create {
		err = f.Chmod(createMode)
	}
	if err == nil {
		_, err = f.WriteAt(data, 0)
	}
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// isRewritten reports whether b begins with the marker line.
func isRewritten(b []byte) bool {
	first, _, _ := bytes.Cut(b, []byte("\n"))
	return string(first) == marker
}

// splitLines splits b into its lines, without their newlines; noEOL: the last had none.
func splitLines(b []byte) (lines []string, noEOL bool) {
	if len(b) == 0 {
		return nil, false
	}
	s := string(b)
	s, eol := strings.CutSuffix(s, "\n")
	return strings.Split(s, "\n"), !eol
}

// render is the rewritten file: the marker, the servers, the original's lines that
// stay in effect, the original behind "#~ ", the end line.
func render(servers []netip.Addr, routeAll bool, orig original) []byte {
	lines, noEOL := splitLines(orig.data)
	var b bytes.Buffer
	b.WriteString(marker + "\n")
	for _, s := range servers {
		b.WriteString("nameserver " + s.String() + "\n")
	}
	for _, ln := range lines {
		switch keyword(ln) {
		case "nameserver":
			// A split tunnel keeps the host's servers, after the VPN's, as a fallback.
			if !routeAll && !namesOneOf(ln, servers) {
				b.WriteString(ln + "\n")
			}
		case "search", "domain", "options", "sortlist":
			b.WriteString(ln + "\n")
		}
	}
	for _, ln := range lines {
		b.WriteString(origPrefix + ln + "\n")
	}
	switch {
	case orig.absent:
		b.WriteString(absentLine + "\n")
	case noEOL:
		b.WriteString(noEOLLine + "\n")
	}
	b.WriteString(endLine + "\n")
	return b.Bytes()
}

// keyword is a resolv.conf line's keyword as glibc reads it: the line's start, followed
// by a space or a tab ("" for anything else).
func keyword(ln string) string {
	if i := strings.IndexAny(ln, " \t"); i > 0 {
		return ln[:i]
	}
	return ""
}

// namesOneOf reports whether the nameserver line ln names one of servers.
func namesOneOf(ln string, servers []netip.Addr) bool {
	f := strings.Fields(ln)
	if len(f) < 2 {
		return false
	}
	a, err := netip.ParseAddr(f[1])
	if err != nil {
		return false
	}
	for _, s := range servers {
		if s == a.Unmap() {
			return true
		}
	}
	return false
}

// parseRewritten returns the original a rewritten file holds. Its error (what is wrong
// with the file) reads after "the file ...", as in "... but has no end line".
func parseRewritten(b []byte) (original, error) {
	if !isRewritten(b) {
		return original{}, errors.New("does not start with the marker line")
	}
	_, rest, _ := bytes.Cut(b, []byte("\n"))
	var (
		o          original
		lines      []string
		noEOL, end bool
	)
	for ln := range strings.SplitSeq(string(rest), "\n") {
		if ln == endLine {
			end = true
			break
		}
		if o.absent || noEOL {
			if strings.HasPrefix(ln, origPrefix) || ln == origEmpty || strings.HasPrefix(ln, directive) {
				return original{}, fmt.Errorf("has %q after %q", ln, noEOLLine+" or "+absentLine)
			}
			continue
		}
		switch {
		case ln == absentLine:
			o.absent = true
			if len(lines) > 0 {
				return original{}, fmt.Errorf("has %q after lines of the original", absentLine)
			}
		case ln == noEOLLine:
			noEOL = true
			if len(lines) == 0 {
				return original{}, fmt.Errorf("has %q without lines of the original", noEOLLine)
			}
		case strings.HasPrefix(ln, directive):
			return original{}, fmt.Errorf("has the unknown line %q", ln)
		case strings.HasPrefix(ln, origPrefix):
			lines = append(lines, ln[len(origPrefix):])
		case ln == origEmpty:
			lines = append(lines, "")
		}
	}
	if !end {
		return original{}, fmt.Errorf("has no %q line (cut short?)", endLine)
	}
	if len(lines) > 0 {
		s := strings.Join(lines, "\n")
		if !noEOL {
			s += "\n"
		}
		o.data = []byte(s)
	}
	return o, nil
}
