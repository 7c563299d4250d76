package jsonlite

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// record has a field of every kind the package decodes.
type record struct {
	Name   string            `json:"name"`
	OK     bool              `json:"ok"`
	At     time.Time         `json:"at"`
	Maybe  *time.Time        `json:"maybe"`
	Items  []item            `json:"items"`
	Labels map[string]string `json:"labels"`
}

type item struct {
	Key string `json:"key"`
	Val string `json:"val"`
}

// decodeRecord is how the packages that use jsonlite decode their types.
func decodeRecord(data []byte) (record, error) {
	var r record
	err := Decode(data, func(d *Decoder) error {
		return d.Object("record", func(key string) error {
			switch Fold(key) {
			case "NAME":
				return d.String(&r.Name)
			case "OK":
				return d.Bool(&r.OK)
			case "AT":
				return d.Time(&r.At)
			case "MAYBE":
				return d.TimePtr(&r.Maybe)
			case "ITEMS":
				return Slice(d, "[]item", &r.Items, func(it *item) error {
					return d.Object("item", func(key string) error {
						switch Fold(key) {
						case "KEY":
							return d.String(&it.Key)
						case "VAL":
							return d.String(&it.Val)
						}
						return d.Skip()
					})
				})
			case "LABELS":
				return StringMap(d, "map[string]string", &r.Labels)
			}
			return d.Skip()
		})
	})
	return r, err
}

func TestDecodeRecord(t *testing.T) {
	at := time.Date(2030, 6, 1, 13, 0, 0, 5, time.UTC)
	tests := []struct {
		name    string
		in      string
		want    record
		wantErr bool
	}{
		{name: "all fields", in: `{"name":"a\u00e9\n","ok":true,"at":"2030-06-01T13:00:00.000000005Z","maybe":"2030-06-01T13:00:00.000000005Z","items":[{"key":"k","val":"v"},null,{}]}`,
			want: record{Name: "a\u00e9\n", OK: true, At: at, Maybe: &at, Items: []item{{"k", "v"}, {}, {}}}},
		{name: "nulls leave fields alone", in: `{"name":null,"ok":null,"at":null,"maybe":null,"items":null}`},
		{name: "empty array is not nil", in: `{"items":[]}`, want: record{Items: []item{}}},
		{name: "keys without regard to case", in: `{"NAME":"x","Ok":true,"ſtuff":1,"aT":"2030-06-01T13:00:00.000000005Z"}`,
			want: record{Name: "x", OK: true, At: at}},
		{name: "unknown keys skipped", in: ` { "x" : [ { "y" : [1, -2.5e+3, "}"] } ], "name" : "n" } `, want: record{Name: "n"}},
		{name: "last duplicate wins", in: `{"name":"a","name":"b"}`, want: record{Name: "b"}},
		{name: "top-level null", in: `null`},
		{name: "map", in: `{"labels":{"a":"b","a":null,"Z":"z"},"labels":{"c":"d"}}`, want: record{Labels: map[string]string{"a": "", "Z": "z", "c": "d"}}},
		{name: "empty map is not nil", in: `{"labels":{}}`, want: record{Labels: map[string]string{}}},
		{name: "bad UTF-8 and lone surrogates become U+FFFD", in: "{\"name\":\"\xff\\ud800x\\udc00\"}", want: record{Name: "\ufffd\ufffdx\ufffd"}},
		{name: "surrogate pair", in: `{"name":"\ud83d\ude00"}`, want: record{Name: "\U0001F600"}},
		{name: "number for a string", in: `{"name":1}`, wantErr: true},
		{name: "string for a bool", in: `{"ok":"true"}`, wantErr: true},
		{name: "array for an object", in: `[]`, wantErr: true},
		{name: "time not RFC 3339", in: `{"at":"yesterday"}`, wantErr: true},
		{name: "time escaped", in: `{"at":"2030-06-01T13:00:00\u005a"}`, wantErr: true},
		{name: "trailing garbage", in: `{} x`, wantErr: true},
		{name: "syntax error after a type error", in: `{"name":1,}`, wantErr: true},
		{name: "control character in a string", in: "{\"name\":\"a\tb\"}", wantErr: true},
		{name: "too deep", in: `{"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, wantErr: true},
		{name: "deep enough", in: `{"x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRecord([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			compareWithJSON(t, []byte(tt.in))
		})
	}
}

// compareWithJSON checks that decodeRecord and json.Unmarshal agree on in.
func compareWithJSON(t *testing.T, in []byte) {
	t.Helper()
	var want record
	wantErr := json.Unmarshal(in, &want)
	got, err := decodeRecord(in)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%q: jsonlite error %v, encoding/json error %v", in, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: jsonlite %+v, encoding/json %+v", in, got, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","ok":true,"at":"2030-06-01T13:00:00Z","maybe":"2030-06-01T15:00:00+02:00","items":[{"key":"k"}]}`,
		`{"items":[{"key":"a"},{"key":"b"}],"items":[{"val":"c"}],"items":[{},{}]}`,
		`{"items":[{"key":"a"},{"key":"b"}],"items":[],"items":[{}]}`,
		`{"maybe":"2030-06-01T13:00:00Z","maybe":"2031-06-01T13:00:00Z"}`,
		`{"name":"\u0041\"\\\/\b\f\n\r\t"}`,
		`{"nAmE":"x","ÖK":true,"\u212aey":1}`,
		`{"labels":{"a":"b","a":null,"c":"d"},"labels":{"e":"f"}}`, `{"labels":{}}`, `{"labels":null}`, `{"labels":{"a":1}}`,
		`[1,2]`, `"s"`, `1e9`, `true`, `null`, ``, ` `, `{`, `{"a":}`, `{"a":1,}`, `[01]`, `-`, `1.`, `1e`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if (Valid(in) == nil) != json.Valid(in) {
			t.Fatalf("%q: Valid %v, json.Valid %v", in, Valid(in), json.Valid(in))
		}
		compareWithJSON(t, in)
	})
}

// FuzzFold checks that a key matches a field as encoding/json matches it.
func FuzzFold(f *testing.F) {
	for _, s := range []string{"name", "NAME", "ſ", "\u212a", "İ", "ı", "naMe", "na\u0130me", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		for _, field := range []string{"name", "k", "s", "i"} {
			in, _ := json.Marshal(map[string]string{key: "v"})
			var v map[string]string
			if err := json.Unmarshal(in, &v); err != nil {
				t.Fatal(err)
			}
			key := ""
			for k := range v {
				key = k // the key as decoded: invalid UTF-8 replaced
			}
			matched := jsonMatches(t, field, in)
			if got := Fold(key) == Fold(field); got != matched {
				t.Errorf("key %q, field %q: Fold match %v, encoding/json match %v", key, field, got, matched)
			}
		}
	})
}

// jsonMatches reports whether encoding/json decodes the one-member object
// in into a struct field named field.
func jsonMatches(t *testing.T, field string, in []byte) bool {
	t.Helper()
	typ := reflect.StructOf([]reflect.StructField{{Name: "F", Type: reflect.TypeOf(""), Tag: reflect.StructTag(`json:"` + field + `"`)}})
	v := reflect.New(typ)
	if err := json.Unmarshal(in, v.Interface()); err != nil {
		t.Fatal(err)
	}
	return v.Elem().Field(0).String() == "v"
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\/\b\f\n\r\t\x00\x1f\x7f", "<a href='x'>&</a>", "\u2028\u2029", "\xff\xfe", "é\U0001F600", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q) = %s, json.Marshal %s", s, got, want)
		}
	})
}

func FuzzIndent(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[],"c":{},"d":[1,{"e":"x,y:{}[]\"\\"}],"f":null}`,
		`[]`, `{}`, `"s"`, `[[[]]]`, `[{},{"a":[{}]}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var compact bytes.Buffer
		if err := json.Compact(&compact, in); err != nil {
			return
		}
		var want bytes.Buffer
		if err := json.Indent(&want, compact.Bytes(), "", "  "); err != nil {
			t.Fatal(err)
		}
		if got := Indent(nil, compact.Bytes(), "  "); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("Indent(%s) =\n%s\njson.Indent:\n%s", compact.Bytes(), got, want.Bytes())
		}
	})
}

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2030, 6, 1, 13, 0, 0, 0, time.UTC),
		time.Date(2030, 6, 1, 13, 0, 0, 120000000, time.FixedZone("x", 7200)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		want, wantErr := json.Marshal(tm)
		got, err := AppendTime([]byte("x"), tm)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%v: error %v, encoding/json error %v", tm, err, wantErr)
		}
		if err == nil && string(got) != "x"+string(want) {
			t.Errorf("AppendTime(%v) = %s, json.Marshal %s", tm, got, want)
		}
	}
}
