// Command minclient is the smallest Go client of tokd that bench/run.sh
// can think of: the same request tokctl get sends, over a socket made with
// the syscall package, and the access token cut out of the answer without
// a JSON decoder. It links nothing but the runtime, os and syscall, and checks
// next to nothing (no version header, no status, no deadline), so it is
// not a client to ship: it is the floor of any Go client's whole-process
// cost, runtime start plus one round trip, against which tokctl's own
// weight (its checks, flag parsing, HTTP and JSON reading, and the larger
// binary they make) shows.
//
//	TOKD_SOCKET=/run/tokd/tokd.sock minclient PROFILE
package main

import (
	"os"
	"syscall"
)

func main() {
	socket := os.Getenv("TOKD_SOCKET")
	profile := "demo"
	if len(os.Args) > 1 {
		profile = os.Args[1]
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fail("socket")
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: socket}); err != nil {
		fail("connect")
	}
	req := "GET /v1/token/" + profile + " HTTP/1.1\r\nHost: tokd\r\nUser-Agent: tokctl\r\nTokd-Api-Version: 1\r\nConnection: close\r\n\r\n"
	if _, err := syscall.Write(fd, []byte(req)); err != nil {
		fail("write")
	}
	buf := make([]byte, 0, 8192)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fail("read")
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	syscall.Close(fd)
	const key = `"access_token":"`
	i := index(buf, key)
	if i < 0 {
		fail("no access_token in the answer")
	}
	tok := buf[i+len(key):]
	j := index(tok, `"`)
	if j < 0 {
		fail("truncated answer")
	}
	syscall.Write(1, append(tok[:j:j], '\n'))
}

func index(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

func fail(msg string) {
	syscall.Write(2, []byte("minclient: "+msg+"\n"))
	syscall.Exit(1)
}
