package main

import (
	"errors"
	"strconv"
)

// flagSet parses command-line flags as the flag package does, for the few
// kinds tokctl has (bool and string flags): -name and --name, -name=value,
// a string flag's value as the next argument, "--" ending the flags, and
// the flag package's error messages (TestFlagsAsFlagPackage compares
// them). The flag package itself is left out of tokctl, with fmt and
// reflect which it links, for what they cost every tokctl process at
// start (docs/BENCHMARKS.md, section 1).
type flagSet struct {
	name  string
	flags []flagDef
	args  []string // what is left after Parse
}

// flagDef is one flag: exactly one of b and s is set.
type flagDef struct {
	name string
	b    *bool
	s    *string
}

// errHelp is -h or -help where no such flag is defined (flag.ErrHelp).
var errHelp = errors.New("flag: help requested")

func newFlagSet(name string) *flagSet { return &flagSet{name: name} }

// Bool defines a bool flag, false unless given.
func (f *flagSet) Bool(name string) *bool {
	p := new(bool)
	f.flags = append(f.flags, flagDef{name: name, b: p})
	return p
}

// String defines a string flag with its default value.
func (f *flagSet) String(name, value string) *string {
	p := &value
	f.flags = append(f.flags, flagDef{name: name, s: p})
	return p
}

// Args returns the arguments left after the flags.
func (f *flagSet) Args() []string { return f.args }

// Parse parses flags from the start of args, up to the first argument
// that is not a flag, or just past "--".
func (f *flagSet) Parse(args []string) error {
	f.args = args
	for len(f.args) > 0 {
		s := f.args[0]
		if len(s) < 2 || s[0] != '-' {
			return nil
		}
		minuses := 1
		if s[1] == '-' {
			minuses++
			if len(s) == 2 { // "--" ends the flags
				f.args = f.args[1:]
				return nil
			}
		}
		name := s[minuses:]
		if len(name) == 0 || name[0] == '-' || name[0] == '=' {
			return errors.New("bad flag syntax: " + s)
		}
		f.args = f.args[1:]
		value, hasValue := "", false
		for i := 1; i < len(name); i++ { // '=' cannot be first
			if name[i] == '=' {
				name, value, hasValue = name[:i], name[i+1:], true
				break
			}
		}
		def := f.lookup(name)
		switch {
		case def == nil && (name == "help" || name == "h"):
			return errHelp
		case def == nil:
			return errors.New("flag provided but not defined: -" + name)
		case def.b != nil && hasValue:
			v, err := strconv.ParseBool(value)
			if err != nil {
				return errors.New("invalid boolean value " + strconv.Quote(value) + " for -" + name + ": parse error")
			}
			*def.b = v
		case def.b != nil:
			*def.b = true
		default:
			if !hasValue && len(f.args) > 0 {
				value, hasValue, f.args = f.args[0], true, f.args[1:]
			}
			if !hasValue {
				return errors.New("flag needs an argument: -" + name)
			}
			*def.s = value
		}
	}
	return nil
}

func (f *flagSet) lookup(name string) *flagDef {
	for i := range f.flags {
		if f.flags[i].name == name {
			return &f.flags[i]
		}
	}
	return nil
}
