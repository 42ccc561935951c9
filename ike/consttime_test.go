package ike

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The source review of issue 7, written as a test: every place that checks a MAC, an
// ICV, AUTH data or a cookie compares in constant time, and no variable-time
// comparison (bytes.Equal, ==/!= on string conversions, a byte loop is not found here)
// takes an operand whose name says it is one of those.

// secretName matches operand names that hold authenticators or cookies.
var secretName = regexp.MustCompile(`(?i)(mac|icv|auth|cookie|psk|sig|tag|key)`)

// constantTimeSites are the functions that verify authenticators, by package folder
// (relative to the module root) and Recv.Name or Name; each must call subtle.ConstantTimeCompare
// (or hmac.Equal) itself.
var constantTimeSites = map[string][]string{
	// AUTH/PSK; SK payload ICV (CBC or CTR with HMAC); AES-CCM and AES-GCM with an
	// 8-octet ICV (written here, not by the standard library).
	"crypto": {"AuthEqual", "cbcSK.Open", "ccm.Open", "gcmShortTag.Open"},
	// ESP ICV (CBC or CTR with HMAC), AES-GCM with 8 octets, AES-CCM.
	"esp":    {"suite.openRaw", "suite.openGCM8", "ccm.open"},
	"ike":    {"cookieJar.valid"}, // COOKIE (RFC 7296 2.6)
	"mobike": {"CheckCookie2"},    // COOKIE2 (RFC 4555 3.5)
}

// funcName is Recv.Name for a method, else Name.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

func parseDir(t *testing.T, dir string) (*token.FileSet, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return fset, files
}

// isCall reports whether e calls pkg.name.
func isCall(e ast.Node, pkg, name string) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	s, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := s.X.(*ast.Ident)
	return ok && id.Name == pkg && s.Sel.Name == name
}

// names is every identifier and field name in e, joined.
func names(e ast.Node) string {
	var b strings.Builder
	ast.Inspect(e, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok {
			b.WriteString(id.Name)
			b.WriteByte(' ')
		}
		return true
	})
	return b.String()
}

func TestAuthenticatorsComparedInConstantTime(t *testing.T) {
	root := filepath.Join("..")
	for dir, funcs := range constantTimeSites {
		_, files := parseDir(t, filepath.Join(root, dir))
		for _, fn := range funcs {
			found, ct := false, false
			for _, f := range files {
				for _, d := range f.Decls {
					fd, ok := d.(*ast.FuncDecl)
					if !ok || funcName(fd) != fn || fd.Body == nil {
						continue
					}
					found = true
					ast.Inspect(fd.Body, func(n ast.Node) bool {
						if isCall(n, "subtle", "ConstantTimeCompare") || isCall(n, "hmac", "Equal") {
							ct = true
						}
						return true
					})
				}
			}
			switch {
			case !found:
				t.Errorf("%s: no function %s (renamed? update constantTimeSites)", dir, fn)
			case !ct:
				t.Errorf("%s.%s verifies an authenticator without subtle.ConstantTimeCompare", dir, fn)
			}
		}
	}
}

func TestNoVariableTimeComparisonOfSecrets(t *testing.T) {
	root := filepath.Join("..")
	for _, dir := range []string{"ike", "crypto", "cert", "esp", "mobike", "internal/control", "internal/daemon"} {
		fset, files := parseDir(t, filepath.Join(root, dir))
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				var operands []ast.Expr
				switch x := n.(type) {
				case *ast.CallExpr:
					if isCall(x, "bytes", "Equal") {
						operands = x.Args
					}
				case *ast.BinaryExpr:
					if x.Op != token.EQL && x.Op != token.NEQ {
						return true
					}
					for _, side := range []ast.Expr{x.X, x.Y} {
						if c, ok := side.(*ast.CallExpr); ok {
							if id, ok := c.Fun.(*ast.Ident); ok && id.Name == "string" && len(c.Args) == 1 {
								operands = append(operands, c.Args[0])
							}
						}
					}
				}
				for _, o := range operands {
					if secretName.MatchString(names(o)) {
						t.Errorf("%s: variable-time comparison of %q; use subtle.ConstantTimeCompare", fset.Position(n.Pos()), names(o))
					}
				}
				return true
			})
		}
	}
}
