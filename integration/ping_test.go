package integration

import "testing"

// TestPingAnswered: a reply still on its way when ping stopped is not a loss; a
// request never answered is.
func TestPingAnswered(t *testing.T) {
	for _, c := range []struct {
		out  string
		want int
		ok   bool
	}{
		{"--- 198.18.0.1 ping statistics ---\n6 packets transmitted, 5 received, 16.6667% packet loss, time 351ms\n", 5, true},
		{"--- 198.18.0.1 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 201ms\n", 5, true},
		{"--- 198.18.0.1 ping statistics ---\n9 packets transmitted, 4 received, 55.5556% packet loss, time 5002ms\n", 5, false},
		{"ping: connect: Network is unreachable\n", 5, false},
	} {
		if got := pingAnswered(c.out, c.want); got != c.ok {
			t.Errorf("pingAnswered(%q, %d) = %v, want %v", c.out, c.want, got, c.ok)
		}
	}
}
