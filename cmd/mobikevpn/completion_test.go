package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// topCommands are the app's top-level command names; the test fails if the known ones
// are missing, so that the checks below are never vacuous.
func topCommands(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, c := range newApp(nil, nil).cliApp().Commands {
		names = append(names, c.Name)
	}
	joined := " " + strings.Join(names, " ") + " "
	for _, want := range []string{"run", "check", "status", "up", "down", "switch", "cluster", "bench", "pki", "completion", "man", "version"} {
		if !strings.Contains(joined, " "+want+" ") {
			t.Fatalf("no command %q among %v", want, names)
		}
	}
	return names
}

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	r := newHarness().run("completion", shell)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("completion %s: exit %d, stderr %q", shell, r.code, r.stderr)
	}
	return r.stdout
}

// writeScript saves script in a new folder and returns its path.
func writeScript(t *testing.T, name, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// shellOutput runs a shell, failing the test with its output when it fails.
func shellOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func needShell(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed: its completion script is checked for content only", name)
	}
}

func TestCompletionContent(t *testing.T) {
	names := topCommands(t)
	for _, shell := range shells {
		script := completionScript(t, shell)
		for _, name := range names {
			if !regexp.MustCompile(`[ '(]` + name + `[ ':)]`).MatchString(script) {
				t.Errorf("%s: the script lacks command %q", shell, name)
			}
		}
		for _, want := range []string{"ca", "gateway", "client", "handshake", "debug info warn error", "bash zsh fish"} {
			if !strings.Contains(script, want) {
				t.Errorf("%s: the script lacks %q", shell, want)
			}
		}
		for _, flag := range []string{"ip", "days", "to-node", "log-level", "dir"} {
			want := "--" + flag
			if shell == "fish" {
				want = "-l " + flag
			}
			if !strings.Contains(script, want) {
				t.Errorf("%s: the script lacks %q", shell, want)
			}
		}
	}
	for _, shell := range []string{"bash", "zsh"} {
		script := completionScript(t, shell)
		for _, path := range []string{"'cluster status')", "'bench handshake')", "'pki ca')", "'pki gateway')", "'pki client')", "'completion')"} {
			if !strings.Contains(script, path) {
				t.Errorf("%s: the script lacks the command path %s", shell, path)
			}
		}
	}
}

func TestCompletionUsage(t *testing.T) {
	h := newHarness()
	h.run("completion", "tcsh").expect(t, exitUsage, `completion "tcsh": unknown shell; choose one of bash, zsh, fish`)
	h.run("completion").expect(t, exitUsage, "completion needs one shell, one of bash, zsh, fish")
	h.run("completion", "bash", "zsh").expect(t, exitUsage, "completion needs one shell")
	h.run("man", "x").expect(t, exitUsage, "man takes no arguments")
}

// completionCases are command lines to complete (the last word being completed) and
// words the completion must offer.
var completionCases = []struct {
	line string
	want []string
}{
	{"mobikevpn ", []string{"run", "pki", "completion", "man", "cluster", "help"}},
	{"mobikevpn p", []string{"pki"}},
	{"mobikevpn pki ", []string{"ca", "gateway", "client"}},
	{"mobikevpn pki gateway --", []string{"--dir", "--name", "--ip", "--days", "--force", "--config"}},
	{"mobikevpn -c x.yaml cluster ", []string{"status"}},
	{"mobikevpn cluster status --", []string{"--json"}},
	{"mobikevpn bench handshake --co", []string{"--count", "--concurrency"}},
	{"mobikevpn --log-level ", []string{"debug", "info", "warn", "error"}},
	{"mobikevpn completion ", []string{"bash", "zsh", "fish"}},
}

// completed checks that got (words separated by white space) holds want and nothing
// that does not start with the word being completed.
func completed(t *testing.T, shell, line, got string, want []string) {
	t.Helper()
	words := strings.Fields(got)
	cur := line[strings.LastIndex(line, " ")+1:]
	for _, w := range want {
		if !strings.Contains(" "+strings.Join(words, " ")+" ", " "+w+" ") {
			t.Errorf("%s: %q offers %q, lacks %q", shell, line, got, w)
		}
	}
	for _, w := range words {
		if !strings.HasPrefix(w, cur) {
			t.Errorf("%s: %q offers %q", shell, line, w)
		}
	}
}

// TestCompletionBash: the script is valid bash, and its function completes.
func TestCompletionBash(t *testing.T) {
	needShell(t, "bash")
	p := writeScript(t, "mobikevpn.bash", completionScript(t, "bash"))
	shellOutput(t, "bash", "-n", p)
	var driver strings.Builder
	driver.WriteString("source " + p + "\n")
	for _, tc := range completionCases {
		words := strings.Split(tc.line, " ")
		driver.WriteString("COMP_WORDS=(")
		for _, w := range words {
			driver.WriteString(" '" + w + "'")
		}
		driver.WriteString(" ); COMP_CWORD=" + strconv.Itoa(len(words)-1) + "; _mobikevpn; echo \"${COMPREPLY[*]}\"\n")
	}
	lines := strings.Split(strings.TrimSuffix(shellOutput(t, "bash", "-c", driver.String()), "\n"), "\n")
	if len(lines) != len(completionCases) {
		t.Fatalf("%d lines of output, want %d: %q", len(lines), len(completionCases), lines)
	}
	for i, tc := range completionCases {
		completed(t, "bash", tc.line, lines[i], tc.want)
	}
	// Completing a --dir value offers folders only.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pkidir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pkifile"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := shellOutput(t, "bash", "-c", "cd "+dir+" && source "+p+" && COMP_WORDS=(mobikevpn pki ca --dir pki) COMP_CWORD=4 && _mobikevpn && echo \"${COMPREPLY[*]}\"")
	if strings.TrimSpace(got) != "pkidir" {
		t.Errorf("--dir pki<TAB>: %q, want pkidir", got)
	}
}

// TestCompletionZsh: the script is valid zsh, and its function completes (with the
// completion system's functions replaced by ones that print what they are given).
func TestCompletionZsh(t *testing.T) {
	needShell(t, "zsh")
	p := writeScript(t, "_mobikevpn", completionScript(t, "zsh"))
	shellOutput(t, "zsh", "-n", p)
	var driver strings.Builder
	driver.WriteString(`compdef() { :; }
source ` + p + `
_describe() { print -rn -- "${(@)${(P)4}%%:*} "; }
compadd() { shift; print -rn -- "$* "; }
_files() { print -rn -- "files $* "; }
t() { words=("$@"); CURRENT=${#words}; PREFIX=${words[-1]}; _mobikevpn; print; }
`)
	for _, tc := range completionCases {
		driver.WriteString("t")
		for _, w := range strings.Split(tc.line, " ") {
			driver.WriteString(" '" + w + "'")
		}
		driver.WriteString("\n")
	}
	lines := strings.Split(strings.TrimSuffix(shellOutput(t, "zsh", "-f", "-c", driver.String()), "\n"), "\n")
	if len(lines) != len(completionCases) {
		t.Fatalf("%d lines of output, want %d: %q", len(lines), len(completionCases), lines)
	}
	for i, tc := range completionCases {
		// zsh filters by the prefix itself: check only what must be offered.
		for _, w := range tc.want {
			if !strings.Contains(" "+lines[i], " "+w+" ") {
				t.Errorf("zsh: %q offers %q, lacks %q", tc.line, lines[i], w)
			}
		}
	}
}

// TestCompletionFish: the script is valid fish, and fish completes with it.
func TestCompletionFish(t *testing.T) {
	needShell(t, "fish")
	p := writeScript(t, "mobikevpn.fish", completionScript(t, "fish"))
	shellOutput(t, "fish", "--no-execute", p)
	for _, tc := range completionCases {
		out := shellOutput(t, "fish", "--no-config", "-c", "source "+p+"; complete -C '"+tc.line+"'")
		var words []string
		for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
			word, _, _ := strings.Cut(ln, "\t")
			words = append(words, word)
		}
		completed(t, "fish", tc.line, strings.Join(words, " "), tc.want)
	}
}

func TestMan(t *testing.T) {
	r := newHarness().run("man")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("man: exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, ".TH") && !strings.HasPrefix(r.stdout, ".nh") {
		t.Errorf("not a man page: %.80q", r.stdout)
	}
	for _, want := range []string{".TH mobikevpn 8", ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH GLOBAL OPTIONS", ".SH COMMANDS", ".SH EXIT STATUS", "MOBIKEVPN_CONTROL", "\\-\\-control"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the man page lacks %q", want)
		}
	}
	for _, name := range topCommands(t) {
		if !strings.Contains(r.stdout, "\n.SH "+name+"\n") {
			t.Errorf("the man page lacks a section for command %q", name)
		}
	}
	for _, want := range []string{"mobikevpn pki gateway --dir DIR --name NAME", "handshake", "--ip"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the man page lacks %q", want)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		p := writeScript(t, "mobikevpn.8", r.stdout)
		if out := shellOutput(t, "man", "-l", p); !strings.Contains(out, "EXIT STATUS") {
			t.Errorf("man -l renders: %.200q", out)
		}
	}
}
