package crypto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// record is one blank-line separated block of "name = value" lines from a vector file.
type record map[string]string

// readRecords parses a testdata file of "name = value" records, skipping comments.
func readRecords(t *testing.T, name string) []record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	cur := record{}
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur = record{}
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "#"):
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", name, line)
			}
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	flush()
	if len(out) == 0 {
		t.Fatalf("%s: no records", name)
	}
	return out
}

func (r record) hex(t *testing.T, k string) []byte {
	t.Helper()
	v, ok := r[k]
	if !ok {
		t.Fatalf("record has no %q: %v", k, r)
	}
	return unhex(t, v)
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// Wycheproof file layouts (aead_test_schema_v1, mac_test_schema_v1,
// xdh_comp_schema_v1, ecdh_ecpoint_test_schema_v1).
type wpFile struct {
	Algorithm  string    `json:"algorithm"`
	TestGroups []wpGroup `json:"testGroups"`
}

type wpGroup struct {
	KeySize int      `json:"keySize"`
	IVSize  int      `json:"ivSize"`
	TagSize int      `json:"tagSize"`
	Curve   string   `json:"curve"`
	Tests   []wpTest `json:"tests"`
}

type wpTest struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Flags   []string `json:"flags"`
	Key     string   `json:"key"`
	IV      string   `json:"iv"`
	AAD     string   `json:"aad"`
	Msg     string   `json:"msg"`
	CT      string   `json:"ct"`
	Tag     string   `json:"tag"`
	Public  string   `json:"public"`
	Private string   `json:"private"`
	Shared  string   `json:"shared"`
	Result  string   `json:"result"`
}

func readWycheproof(t *testing.T, name string) wpFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "wycheproof", name))
	if err != nil {
		t.Fatal(err)
	}
	var f wpFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.TestGroups) == 0 {
		t.Fatalf("%s: no test groups", name)
	}
	return f
}
