package config

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The raw* types mirror the public ones with every value left as a
// toml.Primitive, so that each value is decoded on its own: a type error is
// then a problem at its key instead of the end of decoding, and keys that
// no field takes stay undecoded for MetaData.Undecoded to report.
type rawConfig struct {
	Socket         toml.Primitive `toml:"socket"`
	StateDir       toml.Primitive `toml:"state_dir"`
	MetricsAddress toml.Primitive `toml:"metrics_address"`
	StartJitter    toml.Primitive `toml:"start_jitter"`
	Profiles       toml.Primitive `toml:"profiles"`
}

type rawProfile struct {
	DomainURL        toml.Primitive `toml:"domain_url"`
	TokenURL         toml.Primitive `toml:"token_url"`
	ClientID         toml.Primitive `toml:"client_id"`
	ClientSecretFile toml.Primitive `toml:"client_secret_file"`
	ClientKeyFile    toml.Primitive `toml:"client_key_file"`
	ClientKeyID      toml.Primitive `toml:"client_key_id"`
	ClientCertFile   toml.Primitive `toml:"client_cert_file"`
	GrantType        toml.Primitive `toml:"grant_type"`
	Scopes           toml.Primitive `toml:"scopes"`
	RefreshToken     toml.Primitive `toml:"refresh_token"`
	AllowedUIDs      toml.Primitive `toml:"allowed_uids"`
	AllowedGIDs      toml.Primitive `toml:"allowed_gids"`
	CAFile           toml.Primitive `toml:"ca_file"`
	Timeout          toml.Primitive `toml:"timeout"`
	Assertion        toml.Primitive `toml:"assertion"`
	Git              toml.Primitive `toml:"git"`
	Docker           toml.Primitive `toml:"docker"`
}

type rawAssertion struct {
	Subject  toml.Primitive `toml:"subject"`
	KeyFile  toml.Primitive `toml:"key_file"`
	KeyID    toml.Primitive `toml:"key_id"`
	CertFile toml.Primitive `toml:"cert_file"`
	Audience toml.Primitive `toml:"audience"`
	Lifetime toml.Primitive `toml:"lifetime"`
}

type rawGit struct {
	URLs     toml.Primitive `toml:"urls"`
	Username toml.Primitive `toml:"username"`
}

type rawDocker struct {
	Registries toml.Primitive `toml:"registries"`
	Username   toml.Primitive `toml:"username"`
}

// kind is what a key's value must be.
type kind int

const (
	kindString kind = iota
	kindStrings
	kindBool
	kindIDs
	kindDuration
	kindTable
)

func (k kind) want() string {
	switch k {
	case kindString:
		return "a string"
	case kindStrings:
		return "a list of strings"
	case kindBool:
		return "true or false"
	case kindIDs:
		return "a list of numeric IDs (0 to 4294967295)"
	case kindDuration:
		return `a duration string like "5m"`
	default:
		return "a table"
	}
}

type decoder struct {
	md *toml.MetaData
	r  *report
}

// subKey returns key extended by parts, never sharing key's array.
func subKey(key toml.Key, parts ...string) toml.Key {
	k := make(toml.Key, 0, len(key)+len(parts))
	return append(append(k, key...), parts...)
}

// decode decodes the value at key into dst and reports whether the key
// was present and its value had the right type.
func (d *decoder) decode(key toml.Key, prim toml.Primitive, dst any, k kind) bool {
	if !d.md.IsDefined(key...) {
		return false
	}
	if err := d.md.PrimitiveDecode(prim, dst); err != nil {
		d.r.typeProblem(key.String(), d.typeMessage(prim, k, err))
		return false
	}
	return true
}

// typeMessage explains why the value of a key could not be decoded.
func (d *decoder) typeMessage(prim toml.Primitive, k kind, err error) string {
	var v any
	if d.md.PrimitiveDecode(prim, &v) != nil {
		return "must be " + k.want()
	}
	var pe toml.ParseError
	if _, isString := v.(string); k == kindDuration && isString && errors.As(err, &pe) {
		return pe.Message // names the value
	}
	if items, ok := v.([]any); ok {
		for i, item := range items {
			switch k {
			case kindStrings:
				if _, ok := item.(string); !ok {
					return fmt.Sprintf("must be %s; item %d is %s", k.want(), i+1, describe(item))
				}
			case kindIDs:
				n, ok := item.(int64)
				if !ok {
					return fmt.Sprintf("must be %s; item %d is %s", k.want(), i+1, describe(item))
				}
				if n < 0 || n > math.MaxUint32 {
					return fmt.Sprintf("must be %s; item %d (%d) is out of range", k.want(), i+1, n)
				}
			}
		}
	}
	return fmt.Sprintf("must be %s, not %s", k.want(), describe(v))
}

// describe names the TOML type of a decoded value.
func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date or time"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// duration decodes a duration at key, or sets def when the key is absent,
// and checks that it lies within [lo, hi].
func (d *decoder) duration(key toml.Key, prim toml.Primitive, dst *Duration, def, lo, hi time.Duration) {
	if !d.decode(key, prim, dst, kindDuration) {
		if !d.md.IsDefined(key...) {
			dst.Duration = def
		}
		return
	}
	if dst.Duration < lo || dst.Duration > hi {
		d.r.problem(key.String(), "%s is out of range: it must be between %s and %s", fmtDuration(dst.Duration), fmtDuration(lo), fmtDuration(hi))
	}
}

// fmtDuration prints a duration without zero minutes or seconds ("1h", not "1h0m0s").
func fmtDuration(t time.Duration) string {
	s := t.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (d *decoder) config(raw *rawConfig) *Config {
	cfg := &Config{Profiles: map[string]*Profile{}}
	d.decode(toml.Key{"socket"}, raw.Socket, &cfg.Socket, kindString)
	d.decode(toml.Key{"state_dir"}, raw.StateDir, &cfg.StateDir, kindString)
	d.decode(toml.Key{"metrics_address"}, raw.MetricsAddress, &cfg.MetricsAddress, kindString)
	d.duration(toml.Key{"start_jitter"}, raw.StartJitter, &cfg.StartJitter, DefaultStartJitter, 0, MaxStartJitter)

	var profiles map[string]toml.Primitive
	if !d.decode(toml.Key{"profiles"}, raw.Profiles, &profiles, kindTable) {
		return cfg
	}
	names := make([]string, 0, len(profiles))
	for name := range profiles {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if p := d.profile(name, profiles[name]); p != nil {
			cfg.Profiles[name] = p
		}
	}
	return cfg
}

func (d *decoder) profile(name string, prim toml.Primitive) *Profile {
	key := toml.Key{"profiles", name}
	var rp rawProfile
	if !d.decode(key, prim, &rp, kindTable) {
		return nil
	}
	p := &Profile{Name: name}
	str := func(field string, prim toml.Primitive, dst *string) {
		d.decode(subKey(key, field), prim, dst, kindString)
	}
	str("domain_url", rp.DomainURL, &p.DomainURL)
	str("token_url", rp.TokenURL, &p.TokenURL)
	str("client_id", rp.ClientID, &p.ClientID)
	str("client_secret_file", rp.ClientSecretFile, &p.ClientSecretFile)
	str("client_key_file", rp.ClientKeyFile, &p.ClientKeyFile)
	str("client_key_id", rp.ClientKeyID, &p.ClientKeyID)
	str("client_cert_file", rp.ClientCertFile, &p.ClientCertFile)
	str("grant_type", rp.GrantType, &p.GrantType)
	str("ca_file", rp.CAFile, &p.CAFile)
	d.decode(subKey(key, "scopes"), rp.Scopes, &p.Scopes, kindStrings)
	d.decode(subKey(key, "refresh_token"), rp.RefreshToken, &p.RefreshToken, kindBool)
	d.decode(subKey(key, "allowed_uids"), rp.AllowedUIDs, &p.AllowedUIDs, kindIDs)
	d.decode(subKey(key, "allowed_gids"), rp.AllowedGIDs, &p.AllowedGIDs, kindIDs)
	d.duration(subKey(key, "timeout"), rp.Timeout, &p.Timeout, DefaultTimeout, MinTimeout, MaxTimeout)

	akey := subKey(key, "assertion")
	var ra rawAssertion
	if d.decode(akey, rp.Assertion, &ra, kindTable) {
		a := &Assertion{}
		d.decode(subKey(akey, "subject"), ra.Subject, &a.Subject, kindString)
		d.decode(subKey(akey, "key_file"), ra.KeyFile, &a.KeyFile, kindString)
		d.decode(subKey(akey, "key_id"), ra.KeyID, &a.KeyID, kindString)
		d.decode(subKey(akey, "cert_file"), ra.CertFile, &a.CertFile, kindString)
		d.decode(subKey(akey, "audience"), ra.Audience, &a.Audience, kindStrings)
		d.duration(subKey(akey, "lifetime"), ra.Lifetime, &a.Lifetime, DefaultLifetime, MinLifetime, MaxLifetime)
		p.Assertion = a
	}

	gkey := subKey(key, "git")
	var rg rawGit
	if d.decode(gkey, rp.Git, &rg, kindTable) {
		g := &Git{}
		d.decode(subKey(gkey, "urls"), rg.URLs, &g.URLs, kindStrings)
		d.decode(subKey(gkey, "username"), rg.Username, &g.Username, kindString)
		p.Git = g
	}

	dkey := subKey(key, "docker")
	var rd rawDocker
	if d.decode(dkey, rp.Docker, &rd, kindTable) {
		dk := &Docker{}
		d.decode(subKey(dkey, "registries"), rd.Registries, &dk.Registries, kindStrings)
		d.decode(subKey(dkey, "username"), rd.Username, &dk.Username, kindString)
		p.Docker = dk
	}
	return p
}

// unknownKeys reports every key that no field took: the keys
// MetaData.Undecoded returns, and those the decoder matched only by
// ignoring case. Only the outermost unknown key of a table is reported, and
// nothing below a key whose value had the wrong type.
func (d *decoder) unknownKeys() {
	unknown := map[string]string{} // key -> message
	for _, k := range d.md.Undecoded() {
		unknown[k.String()] = "unknown key"
	}
	for _, k := range d.md.Keys() {
		for i, part := range k {
			if i == 1 && k[0] == "profiles" {
				continue // a profile name, in any case
			}
			if lower := strings.ToLower(part); lower != part {
				ks := k[:i+1].String()
				if _, ok := unknown[ks]; !ok {
					unknown[ks] = fmt.Sprintf("unknown key (keys are lower case: %q)", lower)
				}
				break
			}
		}
	}
	for ks, msg := range unknown {
		if d.r.silenced(ks) || hasUnknownParent(ks, unknown) {
			continue
		}
		d.r.problem(ks, "%s", msg)
	}
}

func hasUnknownParent(key string, unknown map[string]string) bool {
	for k := range unknown {
		if strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}
