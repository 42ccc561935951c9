package control

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// FormatStatus writes s for humans: one block per IKE SA with its Child SAs, in the
// manner of `swanctl --list-sas`, then the drop counters.
func FormatStatus(w io.Writer, s *Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	if len(s.IKESAs) == 0 {
		fmt.Fprintln(tw, "no IKE SAs")
	}
	for i, sa := range s.IKESAs {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s #%d: %s, %s, up %s\n", sa.Name, sa.ID, sa.State, sa.Role,
			(time.Duration(sa.EstablishedS) * time.Second).String())
		fmt.Fprintf(tw, "  local:\t%s (%s)%s\n", dash(sa.Local), dash(sa.LocalID), localNAT(sa))
		fmt.Fprintf(tw, "  remote:\t%s (%s)%s\n", dash(sa.Remote), dash(sa.RemoteID), remoteNAT(sa))
		if sa.Encap {
			fmt.Fprintf(tw, "  encap:\tUDP encapsulation forced\n")
		}
		fmt.Fprintf(tw, "  ike:\t%s, spi_i %s, spi_r %s\n", dash(sa.Proposal), dash(sa.SPIi), dash(sa.SPIr))
		if sa.MobikeState != "" {
			fmt.Fprintf(tw, "  mobike:\t%s, rmobike %s, path %s\n", yesNo(sa.Mobike), yesNo(sa.RMobike), sa.MobikeState)
		} else {
			fmt.Fprintf(tw, "  mobike:\t%s, rmobike %s\n", yesNo(sa.Mobike), yesNo(sa.RMobike))
		}
		if len(sa.PeerAdditionalAddrs) > 0 {
			fmt.Fprintf(tw, "  peer addrs:\t%s\n", strings.Join(sa.PeerAdditionalAddrs, ", "))
		}
		if len(sa.VirtualIPs) > 0 {
			fmt.Fprintf(tw, "  virtual ips:\t%s\n", strings.Join(sa.VirtualIPs, ", "))
		}
		if len(sa.DNS) > 0 {
			fmt.Fprintf(tw, "  dns:\t%s\n", strings.Join(sa.DNS, ", "))
		}
		for _, c := range sa.ChildSAs {
			fmt.Fprintf(tw, "  %s:\t%s, %s, spi_in %s, spi_out %s\n", c.Name, c.State, dash(c.Proposal), dash(c.SPIIn), dash(c.SPIOut))
			fmt.Fprintf(tw, "    \t%s === %s\n", tsList(c.LocalTS), tsList(c.RemoteTS))
			fmt.Fprintf(tw, "    \tin %d bytes %d packets, out %d bytes %d packets\n", c.BytesIn, c.PacketsIn, c.BytesOut, c.PacketsOut)
		}
	}
	names := make([]string, 0, len(s.Drops))
	for k, v := range s.Drops {
		if v != 0 {
			names = append(names, k)
		}
	}
	if len(names) > 0 {
		sort.Strings(names)
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "drops:")
		for _, k := range names {
			fmt.Fprintf(tw, "  %s:\t%d\n", k, s.Drops[k])
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// localNAT is what the NAT detection says of our side: a NAT in front of us shows in
// the peer's NAT_DETECTION_DESTINATION_IP, whatever either end forces.
func localNAT(sa IKESA) string {
	if sa.NATLocal {
		return ", behind a NAT (detected)"
	}
	return ""
}

// remoteNAT is what it says of the peer's side: its NAT_DETECTION_SOURCE_IP does not
// match its address when a NAT is in front of it, and also when it forces UDP
// encapsulation (a fake NAT-D, as strongSwan's encap=yes and our encap: true send); the
// two cannot be told apart, so it says both.
func remoteNAT(sa IKESA) string {
	if sa.NATRemote {
		return ", NAT detection differs (a NAT in front of it, or it forces UDP encapsulation)"
	}
	return ""
}

func tsList(ts []string) string {
	if len(ts) == 0 {
		return "-"
	}
	return strings.Join(ts, ",")
}

// EncapReason is IKESA.UDPEncap for an SA's NAT detection and encap setting.
func EncapReason(natLocal, natRemote, encap bool) string {
	switch {
	case natLocal:
		return "nat"
	case encap:
		return "forced"
	case natRemote:
		return "peer"
	}
	return "none"
}

// FormatBrief prints a brief status (Request.Brief): the counts, the non-zero drop
// counters and the memory, one line each.
func FormatBrief(w io.Writer, s *Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	if c := s.Counts; c != nil {
		fmt.Fprintf(tw, "ike sas:\t%d (%d established), %d half-open\n", c.IKESAs, c.Established, s.HalfOpen)
		fmt.Fprintf(tw, "child sas:\t%d\n", c.ChildSAs)
		fmt.Fprintf(tw, "since start:\t%d IKE SAs, %d Child SAs created, %d liveness checks\n", c.IKESAsCreated, c.ChildSAsCreated, c.LivenessChecks)
	}
	var names []string
	for k, v := range s.Drops {
		if v > 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		fmt.Fprintf(tw, "drops:\tnone\n")
	}
	for i, k := range names {
		label := ""
		if i == 0 {
			label = "drops:"
		}
		fmt.Fprintf(tw, "%s\t%s %d\n", label, k, s.Drops[k])
	}
	if r := s.Runtime; r != nil {
		fmt.Fprintf(tw, "memory:\t%d bytes live heap, %d mapped, %d goroutines\n", r.HeapLiveBytes, r.TotalBytes, r.Goroutines)
	}
	return tw.Flush()
}
