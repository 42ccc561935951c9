package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The gateway as the container image and the systemd unit run it: a non-root user
// (65532, distroless's "nonroot") holding CAP_NET_ADMIN and no other capability, on
// unprivileged ports. The client runs as root, as usual.
const (
	unprivUID = 65532
	capNetAdm = 12 // CAP_NET_ADMIN's bit in /proc/PID/status
)

func TestGatewayWithOnlyNetAdmin(t *testing.T) {
	l := newTunnelLab(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}

	// The gateway's files, where its user can reach them: t.TempDir's folders are root's
	// and mode 0700. The binary is copied too (MOBIKEVPN_BIN may be under /root).
	dir, err := os.MkdirTemp("", "mobikevpn-netadmin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	capMust(t, os.Chmod(dir, 0o711))
	bin := filepath.Join(dir, "mobikevpn")
	capCopyFile(t, binary(t), bin, 0o755)
	run := filepath.Join(dir, "run")
	capMust(t, os.Mkdir(run, 0o700))
	capMust(t, os.Chown(run, unprivUID, unprivUID))
	l.gwSock = filepath.Join(run, "gw.sock")
	l.gwCfg = filepath.Join(dir, "gw.yaml")
	writeFile(t, l.gwCfg, l.gatewayConfig("ports: { ike: 1500, natt: 4501 }\n"))
	capMust(t, os.Chown(l.gwCfg, unprivUID, unprivUID))

	// The client speaks to the gateway's NAT-T port from the first message on (any
	// remote port but 500: strongSwan's rule, README "Privileges").
	l.clCfg = filepath.Join(l.dir, "cl.yaml")
	clCfg := l.clientConfig("198.51.100.1", "")
	withPort := strings.Replace(clCfg, "    start_action: none\n", "    start_action: none\n    remote_port: 4501\n", 1)
	if withPort == clCfg {
		t.Fatal("clientConfig changed: no start_action line to add remote_port after")
	}
	writeFile(t, l.clCfg, withPort)

	// /dev/net/tun must be read-write for the user. It usually is (mode 0666); where it
	// is not (root's alone, as on some CI hosts), the gateway gets its own node of the
	// same device, owned by the user, mounted over /dev/net/tun in its private mount
	// namespace (ip netns exec makes one): nothing changes on the host.
	var devSetup string
	if fi, err := os.Stat("/dev/net/tun"); err != nil {
		t.Fatalf("/dev/net/tun: %v", err)
	} else if fi.Mode().Perm()&0o006 != 0o006 {
		t.Logf("/dev/net/tun is %v here: the gateway gets a node of the device owned by uid %d in its own mount namespace", fi.Mode().Perm(), unprivUID)
		devDir := filepath.Join(dir, "dev")
		capMust(t, os.Mkdir(devDir, 0o755))
		devSetup = fmt.Sprintf(`mount -t tmpfs -o mode=0755,size=64k mobikevpn-dev %[1]s &&
mknod %[1]s/tun c 10 200 && chown %[2]d:%[2]d %[1]s/tun && chmod 0600 %[1]s/tun &&
mount --bind %[1]s/tun /dev/net/tun || exit 111
`, devDir, unprivUID)
	}
	// setpriv: the user and group, no supplementary groups, CAP_NET_ADMIN alone in every
	// set (ambient: kept across the exec), no_new_privs (as systemd's NoNewPrivileges
	// and Kubernetes' allowPrivilegeEscalation: false), killed if the test dies.
	script := devSetup + fmt.Sprintf(`exec setpriv --reuid=%[1]d --regid=%[1]d --clear-groups \
	--inh-caps=-all,+net_admin --ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin \
	--no-new-privs --pdeathsig=KILL -- "$0" run -c "$1"`, unprivUID)
	gw := l.start("gateway", l.gw, "sh", "-c", script, bin, l.gwCfg)
	cl := l.start("client", l.cl, binary(t), "run", "-c", l.clCfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log:\n%s\n\ngateway log:\n%s", lastLines(withoutControl(cl.output()), 150), lastLines(withoutControl(gw.output()), 150))
		}
	})
	for _, s := range []struct {
		sock string
		p    *proc
	}{{l.gwSock, gw}, {l.clSock, cl}} {
		if !waitFor(10*time.Second, func() bool { return status(t, s.sock) != nil }) {
			t.Fatalf("%s did not open its control socket:\n%s", s.p.name, s.p.output())
		}
	}

	// The daemon itself (ip, sh and setpriv exec'd into it: one pid), every thread of it:
	// uid and gid 65532, no other group, CAP_NET_ADMIN and nothing else.
	pid := gw.cmd.Process.Pid
	if comm := capReadProc(t, pid, "comm"); comm != "mobikevpn" {
		t.Fatalf("pid %d is %q, not the daemon", pid, comm)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	want := fmt.Sprintf("%016x", uint64(1)<<capNetAdm)
	ids := fmt.Sprintf("%[1]d\t%[1]d\t%[1]d\t%[1]d", unprivUID)
	for _, task := range tasks {
		st := capProcStatus(t, fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if st == nil {
			continue // the thread ended meanwhile
		}
		for k, v := range map[string]string{
			"Uid": ids, "Gid": ids, "Groups": "",
			"CapPrm": want, "CapEff": want, "CapBnd": want, "CapAmb": want, "NoNewPrivs": "1",
		} {
			if st[k] != v {
				t.Errorf("thread %s of the gateway: %s %q, want %q", task.Name(), k, st[k], v)
			}
		}
	}
	st := capProcStatus(t, fmt.Sprintf("/proc/%d/status", pid))
	t.Logf("gateway pid %d, %d threads: Uid %s, CapEff %s, CapBnd %s, NoNewPrivs %s",
		pid, len(tasks), strings.Fields(st["Uid"])[0], st["CapEff"], st["CapBnd"], st["NoNewPrivs"])

	// The tunnel, both families, through the gateway's unprivileged ports.
	took := l.up(cl, gw)
	t.Logf("handshake with the unprivileged gateway: %v", took)
	rtt4 := l.ping(l.cl, "198.18.0.1", 10)
	rtt6 := l.ping(l.cl, "2001:db8:ff::1", 10)
	t.Logf("ping through the tunnel: IPv4 %.3f ms, IPv6 %.3f ms", rtt4, rtt6)
	l.ping(l.gw, "198.18.100.1", 3)
	sas, _ := statusJSON(t, l.gwSock)["ike_sas"].([]any)
	if len(sas) != 1 {
		t.Fatalf("gateway has %d IKE SAs", len(sas))
	}
	if sa := sas[0].(map[string]any); sa["local"] != "198.51.100.1:4501" || sa["state"] != "established" {
		t.Errorf("gateway SA: local %v, state %v; want 198.51.100.1:4501, established", sa["local"], sa["state"])
	}
	for _, line := range strings.Split(gw.output(), "\n") {
		lower := strings.ToLower(line)
		if strings.Contains(lower, "operation not permitted") || strings.Contains(lower, "permission denied") {
			t.Errorf("the gateway lacked a privilege: %s", line)
		} else if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Logf("gateway: %s", line)
		}
	}

	// SIGTERM: it deletes the SA at the client, removes its TUN device, exits 0, all
	// with CAP_NET_ADMIN alone.
	gw.signal(syscall.SIGTERM)
	if code, exited := gw.wait(10 * time.Second); !exited || code != 0 {
		t.Fatalf("gateway exit: exited=%v code=%d", exited, code)
	}
	if !waitFor(5*time.Second, func() bool { st := status(t, l.clSock); return st != nil && len(st.IKESAs) == 0 }) {
		t.Errorf("the client still has its SA 5 s after the gateway's SIGTERM")
	}
	if out := l.exec(l.gw, "ip", "-o", "link"); strings.Contains(out, "mvpn0") {
		t.Errorf("gateway TUN device still there:\n%s", out)
	}
}

func capMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func capCopyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	capMust(t, out.Close())
	capMust(t, os.Chmod(dst, mode))
}

func capReadProc(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// procStatus reads a /proc status file into its fields (values trimmed); nil when the
// file is gone.
func capProcStatus(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) || err == syscall.ESRCH {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
