package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a small TCP tool that runs inside a namespace
// (MOBIKEVPN_HELPER=tcpsink|tcpsource): it checks that a transfer through the tunnel
// arrives complete and intact.

func helperMain(role string, args []string) int {
	switch role {
	case "tcpsink":
		// tcpsink LISTEN-ADDR: accept one connection, read to EOF, print bytes and hash.
		ln, err := net.Listen("tcp", args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("listening")
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("received %d %s\n", n, hex.EncodeToString(h.Sum(nil)))
		return 0
	case "tcpsource":
		// tcpsource ADDR BYTES: send BYTES pseudo-random bytes, print bytes and hash.
		n, _ := strconv.ParseInt(args[1], 10, 64)
		var c net.Conn
		var err error
		for i := 0; i < 50; i++ {
			if c, err = net.DialTimeout("tcp", args[0], 2*time.Second); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := pace(c, os.Getenv("MOBIKEVPN_TCP_PACING")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		h := sha256.New()
		r := rand.NewChaCha8([32]byte{42})
		w := io.MultiWriter(c, h)
		start := time.Now()
		if _, err := io.CopyN(w, r, n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Half-close and wait for the sink's own close, which comes once it has read
		// everything: a socket closed with data still unacknowledged is an orphan to
		// the kernel, which gives up on it after far fewer retransmissions
		// (tcp_orphan_retries) and resets the connection; under 30% loss that
		// happened (the sink read "connection reset by peer").
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.Close()
		fmt.Printf("sent %d %s %.3f\n", n, hex.EncodeToString(h.Sum(nil)), time.Since(start).Seconds())
		return 0
	}
	if role == "udpsend" {
		return udpsendMain(args)
	}
	if role == "dnsserver" {
		return dnsserverMain(args)
	}
	if role == "httpget" {
		return httpgetMain(args)
	}
	fmt.Fprintln(os.Stderr, "unknown helper", role)
	return 2
}

// tcpTransfer sends n bytes from srcNS to dstAddr:port (listening in dstNS) and checks
// that they arrive intact. It returns the throughput in Mbit/s.
func (l *lab) tcpTransfer(srcNS, dstNS, listen, dial string, n int64) float64 {
	l.t.Helper()
	return l.tcpTransferEnv(srcNS, dstNS, listen, dial, n)
}

// tcpTransferEnv is tcpTransfer with env added to the source's environment.
func (l *lab) tcpTransferEnv(srcNS, dstNS, listen, dial string, n int64, env ...string) float64 {
	l.t.Helper()
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	sink := exec.Command("ip", "netns", "exec", dstNS, self, listen)
	sink.Env = append(os.Environ(), "MOBIKEVPN_HELPER=tcpsink")
	sinkOut, _ := sink.StdoutPipe()
	sink.Stderr = os.Stderr
	if err := sink.Start(); err != nil {
		l.t.Fatal(err)
	}
	defer sink.Process.Kill()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(sinkOut, buf); err != nil || string(buf) != "listening\n" {
		l.t.Fatalf("sink did not start: %q %v", buf, err)
	}
	src := exec.Command("ip", "netns", "exec", srcNS, self, dial, strconv.FormatInt(n, 10))
	src.Env = append(append(os.Environ(), "MOBIKEVPN_HELPER=tcpsource"), env...)
	srcOut, err := src.Output()
	if err != nil {
		l.t.Fatalf("tcp source: %v", err)
	}
	rest, _ := io.ReadAll(sinkOut)
	sink.Wait()
	sent := strings.Fields(string(srcOut))
	recv := strings.Fields(string(rest))
	if len(sent) != 4 || len(recv) != 3 {
		l.t.Fatalf("transfer output: source %q sink %q", srcOut, rest)
	}
	if sent[1] != recv[1] || sent[2] != recv[2] {
		l.t.Fatalf("transfer corrupted: sent %s bytes %s, received %s bytes %s", sent[1], sent[2], recv[1], recv[2])
	}
	secs, _ := strconv.ParseFloat(sent[3], 64)
	return float64(n) * 8 / secs / 1e6
}

// pace caps the sending rate of TCP connection c at rate bytes per second
// (SO_MAX_PACING_RATE: the kernel's TCP pacing); "" leaves it uncapped.
func pace(c net.Conn, rate string) error {
	if rate == "" {
		return nil
	}
	v, err := strconv.Atoi(rate)
	if err != nil {
		return fmt.Errorf("MOBIKEVPN_TCP_PACING=%q: %w", rate, err)
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE, v)
	}); err != nil {
		return err
	}
	return serr
}

// tcpTransferPaced is tcpTransfer at no more than rate bytes per second: a stream that
// does not fill the path's queues, so that what it shares the path with is lost only
// by what the test does, not by congestion.
func (l *lab) tcpTransferPaced(srcNS, dstNS, listen, dial string, n int64, rate int) float64 {
	l.t.Helper()
	return l.tcpTransferEnv(srcNS, dstNS, listen, dial, n, "MOBIKEVPN_TCP_PACING="+strconv.Itoa(rate))
}

// interruptSignal ends a ping so that it prints its summary.
var interruptSignal = syscall.SIGINT

// udpsendMain sends datagrams given as hex arguments from the helper's namespace:
// udpsend LOCALPORT DEST HEX... ; it prints each reply's hex (waiting 300 ms for one).
func udpsendMain(args []string) int {
	lport, _ := strconv.Atoi(args[0])
	dst, err := net.ResolveUDPAddr("udp", args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: lport})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	buf := make([]byte, 65536)
	for _, h := range args[2:] {
		b, err := hex.DecodeString(h)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := c.WriteToUDP(b, dst); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			fmt.Println("-")
			continue
		}
		fmt.Println(hex.EncodeToString(buf[:n]))
	}
	return 0
}
