// Command trivial prints a string and exits: the floor of a Go process's
// whole-process cost (runtime start, fmt's init, one write), against which
// bench/run.sh measures tokctl.
package main

import "fmt"

func main() {
	fmt.Println("hello, world")
}
