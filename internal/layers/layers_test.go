package layers

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/mobikevpn/mobikevpn/"

// rootPkg is the table's name for the package at the module's root.
const rootPkg = "mobikevpn"

// rule is one row of ARCHITECTURE.md's table.
type rule struct {
	allowed []string // packages of this module it may import
	noIO    bool     // "none" in the I/O column
}

// ioImports are what a package without I/O must not import.
var ioImports = []string{"net", "os", "os/exec", "os/signal", "syscall"}

var pkgRe = regexp.MustCompile("`([^`]+)`")

// readRules parses the table of ARCHITECTURE.md.
func readRules(t *testing.T, root string) map[string]rule {
	b, err := os.ReadFile(filepath.Join(root, "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]rule{}
	for _, ln := range strings.Split(string(b), "\n") {
		cols := strings.Split(ln, "|")
		if len(cols) != 6 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cols[1]), "`")
		var r rule
		for _, m := range pkgRe.FindAllStringSubmatch(cols[3], -1) {
			r.allowed = append(r.allowed, m[1])
		}
		r.noIO = strings.TrimSpace(cols[4]) == "none"
		rules[name] = r
	}
	if len(rules) == 0 {
		t.Fatal("ARCHITECTURE.md: no rows read")
	}
	return rules
}

// TestLayers: every package's non-test imports of this module are the ones its row
// allows, packages without I/O import nothing that does I/O, and every package has a row.
func TestLayers(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range check(t, root) {
		t.Error(p)
	}
}

// TestLayersCatchesViolations: the check itself finds what it must, in a tree made for it.
func TestLayersCatchesViolations(t *testing.T) {
	root := t.TempDir()
	write := func(path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ARCHITECTURE.md", "| package | for | may import | I/O |\n|---|---|---|---|\n"+
		"| `low` | x | - | none |\n| `high` | x | `low` | none |\n| `gone` | x | - | none |\n")
	write("low/low.go", "package low\nimport (\n\"os\"\n\""+module+"high\"\n)\n")
	write("high/high.go", "package high\nimport \""+module+"low\"\n")
	write("high/high_test.go", "package high\nimport \"os\"\n")
	write("extra/extra.go", "package extra\n")
	write("root.go", "package root\n")                                           // the module's root: no row
	write("low/low2.go", "package low\nimport \""+module[:len(module)-1]+"\"\n") // imports the root
	got := strings.Join(check(t, root), "\n")
	for _, want := range []string{"low imports high", "low does no I/O by ARCHITECTURE.md, but imports os", "extra has no row", "a row for gone", "package mobikevpn has no row", "low imports mobikevpn"} {
		if !strings.Contains(got, want) {
			t.Errorf("the check did not report %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "high_test.go") || strings.Count(got, "\n") != 5 {
		t.Errorf("the check reported more than it should:\n%s", got)
	}
}

// check returns the violations of ARCHITECTURE.md's rules in the tree at root.
func check(t *testing.T, root string) []string {
	t.Helper()
	rules := readRules(t, root)
	var problems []string
	seen := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "integration" || n == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		if pkg == "." {
			pkg = rootPkg
		}
		seen[pkg] = true
		r, ok := rules[pkg]
		if !ok {
			problems = append(problems, path+": package "+pkg+" has no row in ARCHITECTURE.md")
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p+"/" == module {
				p = module + rootPkg
			}
			if own, ok := strings.CutPrefix(p, module); ok {
				if !slices.Contains(r.allowed, own) {
					problems = append(problems, path+": "+pkg+" imports "+own+", which its row in ARCHITECTURE.md does not allow")
				}
				continue
			}
			if r.noIO && (slices.Contains(ioImports, p) || strings.HasPrefix(p, "golang.org/x/sys")) {
				problems = append(problems, path+": "+pkg+" does no I/O by ARCHITECTURE.md, but imports "+p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range rules {
		if !seen[pkg] {
			problems = append(problems, "ARCHITECTURE.md has a row for "+pkg+", which has no Go files")
		}
	}
	return problems
}
