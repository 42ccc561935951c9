package integration

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The release packaging: scripts/package.sh, the .deb, the systemd unit, the default
// configuration, and the container files (which cannot be built here: no Docker).

const repoRoot = ".." // go test runs in integration/

// pkgVersion is stamped into the test build; its Debian form is pkgDebVersion.
const (
	pkgVersion    = "v1.2.3-rc.1"
	pkgDebVersion = "1.2.3~rc.1"
)

func TestDebPackage(t *testing.T) {
	needRoot(t) // dpkg-deb -x keeps owners and modes as root only
	for _, tool := range []string{"dpkg-deb", "git", "tar", "gzip", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	arch := runtime.GOARCH
	dist := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "package.sh"), pkgVersion)
	cmd.Env = append(os.Environ(), "DIST="+dist, "PACKAGE_TARGETS=linux/"+arch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("package.sh: %v\n%s", err, out)
	}
	wantCommit := "unknown"
	if b, err := exec.Command("git", "-C", repoRoot, "rev-parse", "HEAD").Output(); err == nil {
		wantCommit = strings.TrimSpace(string(b))
	}

	// Exactly the two artifacts of one target, and their checksums.
	name := fmt.Sprintf("mobikevpn-%s-linux-%s", pkgVersion, arch)
	tgz := name + ".tar.gz"
	deb := fmt.Sprintf("mobikevpn_%s_%s.deb", pkgDebVersion, arch)
	entries, _ := os.ReadDir(dist)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"SHA256SUMS", deb, tgz}
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") { // ReadDir sorts by name
		t.Fatalf("dist holds %v, want SHA256SUMS, %s, %s\n%s", names, deb, tgz, out)
	}
	sums := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	sums.Dir = dist
	if out, err := sums.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != 2 {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}

	// The archive: one folder with the binary, LICENSE, README.md, the third-party
	// licenses and the default configuration (private), owned by 0:0.
	wantTar := map[string]int64{
		name + "/":                     0o755,
		name + "/mobikevpn":            0o755,
		name + "/LICENSE":              0o644,
		name + "/README.md":            0o644,
		name + "/THIRD_PARTY_LICENSES": 0o644,
		name + "/mobikevpn.yaml":       0o600,
	}
	for hdrName, hdr := range readTarGz(t, filepath.Join(dist, tgz)) {
		mode, ok := wantTar[hdrName]
		if !ok {
			t.Errorf("%s holds %s", tgz, hdrName)
			continue
		}
		delete(wantTar, hdrName)
		if hdr.Mode&0o7777 != mode || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: %s mode %o owner %d:%d, want %o 0:0", tgz, hdrName, hdr.Mode, hdr.Uid, hdr.Gid, mode)
		}
	}
	for missing := range wantTar {
		t.Errorf("%s lacks %s", tgz, missing)
	}

	// The .deb's fields.
	debPath := filepath.Join(dist, deb)
	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Section", "Priority", "Recommends", "Depends", "Description"} {
		v, _ := exec.Command("dpkg-deb", "-f", debPath, f).Output()
		fields[f] = strings.TrimSpace(string(v))
	}
	for k, v := range map[string]string{"Package": "mobikevpn", "Version": pkgDebVersion, "Architecture": arch,
		"Section": "net", "Priority": "optional", "Recommends": "nftables", "Depends": ""} {
		if fields[k] != v {
			t.Errorf("%s: %s %q, want %q", deb, k, fields[k], v)
		}
	}
	if !regexp.MustCompile(`^.+ <[^<>@ ]+@[^<>@ ]+>$`).MatchString(fields["Maintainer"]) || fields["Description"] == "" {
		t.Errorf("%s: Maintainer %q, Description %q", deb, fields["Maintainer"], fields["Description"])
	}

	// Its files, as dpkg-deb lists them: modes and owners.
	listing, err := exec.Command("dpkg-deb", "-c", debPath).Output()
	if err != nil {
		t.Fatal(err)
	}
	wantDeb := map[string]string{
		"./usr/bin/mobikevpn":                    "-rwxr-xr-x root/root",
		"./lib/systemd/system/mobikevpn.service": "-rw-r--r-- root/root",
		"./etc/mobikevpn/":                       "drwx------ root/root",
		"./etc/mobikevpn/mobikevpn.yaml":         "-rw------- root/root",
		"./usr/share/doc/mobikevpn/copyright":    "-rw-r--r-- root/root",
		"./usr/share/doc/mobikevpn/README.md":    "-rw-r--r-- root/root",
	}
	for _, line := range strings.Split(strings.TrimSpace(string(listing)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		path, modeOwner := f[len(f)-1], f[0]+" "+f[1]
		if f[1] != "root/root" {
			t.Errorf("%s: %s owned by %s", deb, path, f[1])
		}
		if want, ok := wantDeb[path]; ok {
			if modeOwner != want {
				t.Errorf("%s: %s is %s, want %s", deb, path, modeOwner, want)
			}
			delete(wantDeb, path)
		}
	}
	for missing := range wantDeb {
		t.Errorf("%s lacks %s:\n%s", deb, missing, listing)
	}

	// The maintainer scripts: the configuration is a conffile; postinst makes systemd
	// reload its units and neither enables nor starts the service.
	ctl := filepath.Join(t.TempDir(), "DEBIAN")
	if out, err := exec.Command("dpkg-deb", "-e", debPath, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(b) != "/etc/mobikevpn/mobikevpn.yaml\n" {
		t.Errorf("conffiles: %q", b)
	}
	starts := regexp.MustCompile(`(?m)^[^#]*\b(systemctl\b[^#\n]*\b(enable|start|restart|reenable|try-restart|reload-or-restart|preset|unmask)\b|deb-systemd-invoke|invoke-rc\.d|service\s+mobikevpn)`)
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(ctl, script)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", script, fi.Mode(), err)
			continue
		}
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", script, err, out)
		}
		b, _ := os.ReadFile(p)
		if script == "postinst" {
			if m := starts.Find(b); m != nil {
				t.Errorf("postinst enables or starts the service: %q", m)
			}
			if !strings.Contains(string(b), "systemctl daemon-reload") {
				t.Errorf("postinst does not reload systemd's units:\n%s", b)
			}
		}
	}

	// Installed with dpkg into a clean root (its own, empty package database; the
	// maintainer scripts run, outside the root since it has no shell): the binary, run
	// inside the root with chroot, says what it is and accepts the default
	// configuration.
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), "")
	if out, err := exec.Command("dpkg", "--root="+root, "--force-script-chrootless", "-i", debPath).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i into a clean root: %v\n%s", err, out)
	}
	if out, err := exec.Command("dpkg", "--root="+root, "-s", "mobikevpn").CombinedOutput(); err != nil || !strings.Contains(string(out), "Status: install ok installed") {
		t.Fatalf("dpkg -s: %v\n%s", err, out)
	}
	bin := filepath.Join(root, "usr/bin/mobikevpn")
	conf := filepath.Join(root, "etc/mobikevpn/mobikevpn.yaml")
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("installed %s: %v %v", conf, fi.Mode(), err)
	}
	defer func() {
		// Purged: nothing of the package is left in the root but dpkg's own files.
		if out, err := exec.Command("dpkg", "--root="+root, "--force-script-chrootless", "-P", "mobikevpn").CombinedOutput(); err != nil {
			t.Errorf("dpkg -P: %v\n%s", err, out)
		}
		for _, p := range []string{"usr/bin/mobikevpn", "etc/mobikevpn", "lib/systemd/system/mobikevpn.service"} {
			if _, err := os.Stat(filepath.Join(root, p)); err == nil {
				t.Errorf("%s left after purge", p)
			}
		}
	}()
	version, err := exec.Command("chroot", root, "/usr/bin/mobikevpn", "version").CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(version)), "\n")
	if err != nil || len(lines) != 3 || lines[0] != "mobikevpn "+pkgVersion ||
		(lines[1] != "commit: "+wantCommit && lines[1] != "commit: "+wantCommit+"-dirty") {
		t.Errorf("mobikevpn version: %v\n%s\nwant mobikevpn %s, commit: %s[-dirty]", err, version, pkgVersion, wantCommit)
	}
	if out, err := exec.Command("chroot", root, "/usr/bin/mobikevpn", "check", "-c", "/etc/mobikevpn/mobikevpn.yaml").CombinedOutput(); err != nil {
		t.Errorf("mobikevpn check -c /etc/mobikevpn/mobikevpn.yaml (in the root): %v\n%s", err, out)
	}
	// A static binary: no interpreter, so it runs on any Linux of its architecture.
	if out, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("not a static binary: %s", out)
	}

	// The unit, as packaged.
	checkUnit(t, filepath.Join(root, "lib/systemd/system/mobikevpn.service"), bin)
	t.Logf("%s: %s, %d bytes installed", deb, fields["Version"], dirSize(t, root))
}

// checkUnit parses the unit file (sections and Key=Value lines, nothing else), checks
// the settings the package relies on, and, where systemd-analyze exists, has systemd
// verify it (with ExecStart pointed at bin, since /usr/bin/mobikevpn may not exist).
func checkUnit(t *testing.T, path, bin string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"Unit": true, "Service": true, "Install": true}
	settings := map[string][]string{} // "Section.Key" -> values in order
	section := ""
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if !known[section] {
				t.Errorf("%s:%d: section [%s]", path, n, section)
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || !regexp.MustCompile(`^[A-Z][A-Za-z]+$`).MatchString(k) || strings.HasSuffix(line, `\`) {
				t.Errorf("%s:%d: not a Key=Value line in a section: %q", path, n, line)
				continue
			}
			settings[section+"."+k] = append(settings[section+"."+k], v)
		}
	}
	const cfg = "/etc/mobikevpn/mobikevpn.yaml"
	for k, v := range map[string]string{
		"Service.Type":                    "notify",
		"Service.ExecStart":               "/usr/bin/mobikevpn run -c " + cfg,
		"Service.ExecStartPre":            "/usr/bin/mobikevpn check -c " + cfg,
		"Service.ExecReload":              "/bin/kill -HUP $MAINPID",
		"Service.WatchdogSec":             "30s",
		"Service.Restart":                 "on-failure",
		"Service.CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"Service.AmbientCapabilities":     "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.RuntimeDirectory":        "mobikevpn",
		"Service.RuntimeDirectoryMode":    "0700",
		"Service.StateDirectory":          "mobikevpn",
		"Service.DeviceAllow":             "/dev/net/tun rw",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_NETLINK AF_UNIX AF_PACKET",
		"Service.ProtectKernelModules":    "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.LockPersonality":         "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.SystemCallArchitectures": "native",
		"Install.WantedBy":                "multi-user.target",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s = %q, want %q", path, k, got, v)
		}
	}
	if rw := settings["Service.ReadWritePaths"]; len(rw) != 1 || !strings.Contains(rw[0], "-/etc/resolv.conf") {
		t.Errorf("%s: ReadWritePaths = %q, want -/etc/resolv.conf among them", path, rw)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze not installed: the unit was only parsed")
		return
	}
	unit := filepath.Join(t.TempDir(), "mobikevpn.service")
	writeFile(t, unit, strings.ReplaceAll(string(b), "/usr/bin/mobikevpn", bin))
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	// Only what concerns our unit: the host's own units may have complaints of their own.
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "mobikevpn") {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func readTarGz(t *testing.T, path string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdrs := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		hdrs[hdr.Name] = hdr
	}
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestContainerPackaging checks what can be checked of the container files without
// Docker or Kubernetes: they parse, say what the image and the README promise (uid
// 65532, CAP_NET_ADMIN alone, the TUN device, UDP 500/4500), and the gateway
// configuration they carry passes `mobikevpn check`.
func TestContainerPackaging(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	pk := filepath.Join(repoRoot, "packaging")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(pk, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// check runs `mobikevpn check` on a configuration laid out as in the container:
	// the file and secrets/psk beside it.
	check := func(what, config, psk string) {
		t.Helper()
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "secrets", "psk"), psk)
		writeFile(t, filepath.Join(dir, "mobikevpn.yaml"), config)
		if out, err := exec.Command(binary(t), "check", "-c", filepath.Join(dir, "mobikevpn.yaml")).CombinedOutput(); err != nil {
			t.Errorf("%s: mobikevpn check: %v\n%s", what, err, out)
		}
	}

	// The Dockerfile: a Go builder of go.mod's Go release, the static binary, uid 65532.
	df := read("Dockerfile")
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	for _, want := range []string{
		"ARG GO_VERSION=" + string(goLine[1]) + "\n",
		"FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build",
		"CGO_ENABLED=0",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"setcap cap_net_admin=ep /out/usr/bin/mobikevpn",
		"USER 65532:65532",
		"EXPOSE 500/udp 4500/udp",
		`ENTRYPOINT ["/usr/bin/mobikevpn", "run", "-c", "/etc/mobikevpn/mobikevpn.yaml"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// What it copies from the build context exists.
	for _, m := range regexp.MustCompile(`(?m)^COPY (?:--[a-z]+=\S+ )*([^-\n][^\n]*) \S+$`).FindAllStringSubmatch(df, -1) {
		if strings.Contains(m[0], "--from=") {
			continue
		}
		for _, src := range strings.Fields(m[1]) {
			if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
				t.Errorf("Dockerfile copies %s: %v", src, err)
			}
		}
	}

	// compose.yaml
	var compose struct {
		Services map[string]struct {
			User        string            `yaml:"user"`
			CapDrop     []string          `yaml:"cap_drop"`
			CapAdd      []string          `yaml:"cap_add"`
			Devices     []string          `yaml:"devices"`
			Sysctls     map[string]string `yaml:"sysctls"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			Tmpfs       []string          `yaml:"tmpfs"`
			ReadOnly    bool              `yaml:"read_only"`
			SecurityOpt []string          `yaml:"security_opt"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(read("compose.yaml")), &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	gw, ok := compose.Services["gateway"]
	if !ok {
		t.Fatalf("compose.yaml: no gateway service")
	}
	got := fmt.Sprintf("user %s, cap_drop %v, cap_add %v, devices %v, ip_forward %s, ports %v, read_only %v, security_opt %v",
		gw.User, gw.CapDrop, gw.CapAdd, gw.Devices, gw.Sysctls["net.ipv4.ip_forward"], gw.Ports, gw.ReadOnly, gw.SecurityOpt)
	if want := "user 65532:65532, cap_drop [ALL], cap_add [NET_ADMIN], devices [/dev/net/tun:/dev/net/tun], ip_forward 1, ports [500:500/udp 4500:4500/udp], read_only true, security_opt []"; got != want {
		t.Errorf("compose.yaml gateway:\n got %s\nwant %s", got, want)
	}
	if gw.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" || len(gw.Tmpfs) != 1 || !strings.HasPrefix(gw.Tmpfs[0], "/run/mobikevpn:") {
		t.Errorf("compose.yaml gateway: sysctls %v, tmpfs %v", gw.Sysctls, gw.Tmpfs)
	}
	mounts := strings.Join(gw.Volumes, " ")
	if !strings.Contains(mounts, "./gateway.yaml:/etc/mobikevpn/mobikevpn.yaml:ro") || !strings.Contains(mounts, ":/etc/mobikevpn/secrets/psk:ro") {
		t.Errorf("compose.yaml gateway volumes: %v", gw.Volumes)
	}
	gatewayYAML := read("gateway.yaml")
	check("gateway.yaml", gatewayYAML, "container test secret\n")

	// k8s/gateway.yaml: the documents, the pod's security, the Service, and the
	// configuration it carries (which must say what gateway.yaml says).
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(read("k8s/gateway.yaml")))
	for {
		var d map[string]any
		if err := dec.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("k8s/gateway.yaml: %v", err)
		}
		kind, _ := d["kind"].(string)
		docs[kind] = d
	}
	for _, kind := range []string{"Namespace", "ConfigMap", "Secret", "Deployment", "Service"} {
		if docs[kind] == nil {
			t.Fatalf("k8s/gateway.yaml: no %s", kind)
		}
	}
	dig := func(v any, path ...any) any {
		for _, p := range path {
			switch p := p.(type) {
			case string:
				m, _ := v.(map[string]any)
				v = m[p]
			case int:
				l, _ := v.([]any)
				if p >= len(l) {
					return nil
				}
				v = l[p]
			}
		}
		return v
	}
	pod := dig(docs["Deployment"], "spec", "template", "spec")
	ctr := dig(pod, "containers", 0)
	sec := dig(ctr, "securityContext")
	got = fmt.Sprintf("runAsNonRoot %v, runAsUser %v, allowPrivilegeEscalation %v, readOnlyRootFilesystem %v, drop %v, add %v",
		dig(sec, "runAsNonRoot"), dig(sec, "runAsUser"), dig(sec, "allowPrivilegeEscalation"), dig(sec, "readOnlyRootFilesystem"),
		dig(sec, "capabilities", "drop"), dig(sec, "capabilities", "add"))
	if want := "runAsNonRoot true, runAsUser 65532, allowPrivilegeEscalation false, readOnlyRootFilesystem true, drop [ALL], add [NET_ADMIN]"; got != want {
		t.Errorf("k8s container securityContext:\n got %s\nwant %s", got, want)
	}
	var tunVol, runVol bool
	for _, v := range dig(pod, "volumes").([]any) {
		if dig(v, "hostPath", "path") == "/dev/net/tun" && dig(v, "hostPath", "type") == "CharDevice" {
			tunVol = true
		}
		if dig(v, "emptyDir") != nil && dig(v, "name") == "run" {
			runVol = true
		}
	}
	if !tunVol || !runVol {
		t.Errorf("k8s pod volumes: /dev/net/tun hostPath %v, /run/mobikevpn emptyDir %v", tunVol, runVol)
	}
	svc := dig(docs["Service"], "spec")
	if dig(svc, "type") != "LoadBalancer" || dig(svc, "externalTrafficPolicy") != "Local" {
		t.Errorf("k8s Service: type %v, externalTrafficPolicy %v", dig(svc, "type"), dig(svc, "externalTrafficPolicy"))
	}
	var svcPorts []string
	for _, p := range dig(svc, "ports").([]any) {
		svcPorts = append(svcPorts, fmt.Sprintf("%v/%v", dig(p, "port"), dig(p, "protocol")))
	}
	if strings.Join(svcPorts, " ") != "500/UDP 4500/UDP" {
		t.Errorf("k8s Service ports %v", svcPorts)
	}
	cm, _ := dig(docs["ConfigMap"], "data", "mobikevpn.yaml").(string)
	psk, _ := dig(docs["Secret"], "stringData", "psk").(string)
	check("k8s ConfigMap", cm, psk)
	var a, b any
	if err := yaml.Unmarshal([]byte(cm), &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(gatewayYAML), &b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("the k8s ConfigMap's configuration differs from gateway.yaml:\n%v\n%v", a, b)
	}
}
