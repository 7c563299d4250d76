// Command hello writes a string with os.Stdout.Write and exits: the floor
// of a Go process here, runtime start and the os package, without fmt.
// bench/run.sh measures it beside bench/trivial (the same with fmt, the
// reference of the latency target) to show what any Go client of tokd
// pays before it does anything.
package main

import "os"

func main() {
	os.Stdout.Write([]byte("hello, world\n"))
}
