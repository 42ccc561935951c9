// Package hostdns puts a VPN client's DNS servers (those its gateways sent in their
// configuration payloads) on the host while the tunnel is up, and takes them off again
// afterwards, leaving the host as it found it.
//
// A Manager uses one of three mechanisms, chosen once (at the first Apply or Backend
// call) in this order:
//
//   - "resolved": systemd-resolved, when resolvectl is installed and resolved is running
//     (its varlink socket io.systemd.Resolve exists). The servers are set on the TUN
//     device's link (resolvectl dns); a full tunnel also makes the link the route for
//     every name (resolvectl domain DEV ~.) and a default route for DNS (resolvectl
//     default-route DEV yes). Revert is resolvectl revert DEV. Nothing needs backing up:
//     the settings belong to the link and go away with it (a device already gone when
//     Revert runs is not an error).
//   - "resolvconf": Debian's resolvconf or openresolv. The servers are the record
//     DEV.mobikevpn (resolvconf -a, nameserver lines on its standard input); a full
//     tunnel with openresolv marks the record exclusive (-x), so that only its servers
//     are used. Revert deletes the record (resolvconf -d DEV.mobikevpn -f). When the
//     resolvconf found is systemd's compatibility command while resolved does not run,
//     the file is used instead.
//   - "file": /etc/resolv.conf rewritten by this package, see below.
//
// # The rewritten resolv.conf
//
// The file's first line is a marker; then come the nameserver lines of the VPN's servers,
// the original's search, domain, options and sortlist lines (still in effect), and then the
// whole original, every line behind "#~ " (comments to every resolver), ending with a
// "#~! end" line. "#~! noeol" records an original whose last line had no newline, "#~!
// absent" a file that did not exist (Revert removes it again). For a split tunnel
// (routeAll false) the original's nameserver lines stay in effect after the VPN's, as a
// fallback; a full tunnel drops them. All the VPN's servers are written, though glibc and
// musl use only the first three nameserver lines (Apply logs it when there are more).
//
// The file is rewritten in place, never replaced by a rename: under ip netns exec,
// /etc/resolv.conf is a bind mount of /etc/netns/NS/resolv.conf, and nothing can be
// renamed onto a mount point. When the path is a symbolic link, the file it points to
// is rewritten (and, had it been absent, created and later removed, leaving the link).
// The new content is written over the old from its start and the file then truncated
// to its length, rather than truncated first (O_TRUNC), so that the file is never empty:
// a rewrite is always longer than the original it holds, so a process killed during
// Apply leaves the original or the whole rewrite (a shorter rewrite over a longer one
// may keep the longer one's tail, after its end line, where it is ignored). Only a kill
// between the write and the truncation of Revert leaves something else: the original
// followed by the rewrite's tail, mostly comments. Writing in place keeps the file's
// mode and owner. Revert restores the original byte for byte, but
// only when the file still holds exactly what Apply wrote: a file someone else changed
// meanwhile (a DHCP client, an administrator) is left alone, and Revert says so. An Apply
// that finds such a file takes its content as the new original.
//
// # Crash recovery
//
// Since the original is kept inside the rewritten file, a daemon killed before Revert
// (SIGKILL) loses nothing: RecoverStale, called at the next start, finds the marker and
// restores the original by the same code as Revert. An Apply that finds
// a stale rewritten file (RecoverStale not called) takes the original from it too, so
// the original is never lost under a second rewrite. systemd-resolved's settings go away
// with the TUN device. With resolvconf, RecoverStale also deletes the records
// DEV.mobikevpn whose device no longer exists (resolvconf -i lists them): a killed
// daemon's TUN device is gone with it, while another live daemon's is not.
package hostdns
