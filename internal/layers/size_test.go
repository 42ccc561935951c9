package layers

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The size targets of ARCHITECTURE.md: no Go file (tests aside) over maxFileLines, no
// function over maxFuncLines except the tables listed in tableFuncs.
const (
	maxFileLines = 800
	maxFuncLines = 100
)

// tableFuncs are functions that are one long table (a row per command or per case):
// splitting them would only scatter the table.
var tableFuncs = map[string]bool{
	"cmd/mobikevpn/app.go:cliApp": true, // the command line's commands and flags
}

// measure reports the files over maxFileLines and the functions over maxFuncLines
// below root (tests aside), longest first.
func measure(root string) ([]string, error) {
	type long struct {
		what string
		n    int
	}
	var found []long
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		if n := fset.File(f.Pos()).LineCount(); n > maxFileLines {
			found = append(found, long{fmt.Sprintf("file %s: %d lines (at most %d)", rel, n, maxFileLines), n})
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil || tableFuncs[rel+":"+fd.Name.Name] {
				continue
			}
			n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
			if n > maxFuncLines {
				found = append(found, long{fmt.Sprintf("func %s:%s: %d lines (at most %d)", rel, fd.Name.Name, n, maxFuncLines), n})
			}
		}
		return nil
	})
	sort.Slice(found, func(i, j int) bool { return found[i].n > found[j].n })
	var out []string
	for _, l := range found {
		out = append(out, l.what)
	}
	return out, err
}

func TestSizes(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	over, err := measure(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range over {
		t.Error(o)
	}
}

// TestSizesCatchesViolations: the check finds a long file and a long function.
func TestSizesCatchesViolations(t *testing.T) {
	root := t.TempDir()
	var b strings.Builder
	b.WriteString("package x\n\nfunc long() {\n")
	for range maxFuncLines {
		b.WriteString("\t_ = 1\n")
	}
	b.WriteString("}\n\nfunc short() {}\n")
	for range maxFileLines {
		b.WriteString("\n")
	}
	if err := writeFile(filepath.Join(root, "x", "x.go"), b.String()); err != nil {
		t.Fatal(err)
	}
	over, err := measure(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("file x/x.go: %d lines (at most %d)", maxFuncLines+maxFileLines+6, maxFileLines),
		fmt.Sprintf("func x/x.go:long: %d lines (at most %d)", maxFuncLines+2, maxFuncLines),
	}
	if strings.Join(over, "\n") != strings.Join(want, "\n") {
		t.Errorf("measure found:\n%s\nwant:\n%s", strings.Join(over, "\n"), strings.Join(want, "\n"))
	}
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
