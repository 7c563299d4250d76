package tools_test

import (
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// nfpmContent is one entry of nfpm.yaml's contents.
type nfpmContent struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Type     string `json:"type"`
	Packager string `json:"packager"`
}

// TestPackageOwnsItsDirectories checks that every directory of tokd's
// own (a path with a "tokd" element, such as /etc/tokd) that holds a
// packaged file is itself an entry of nfpm.yaml for that package format.
// nfpm puts only the entries listed into an .rpm, so without one rpm
// does not own the directory, and erasing the package leaves it behind
// (checked with rpm --root: /etc/tokd and /usr/share/licenses/tokd stayed).
func TestPackageOwnsItsDirectories(t *testing.T) {
	data, err := os.ReadFile("../nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Contents []nfpmContent `json:"contents"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("nfpm.yaml: %v", err)
	}
	for _, p := range problemsOwningDirectories(cfg.Contents) {
		t.Error(p)
	}
}

// TestPackageOwnsItsDirectoriesCanFail drops the directory entries and
// expects the check to notice.
func TestPackageOwnsItsDirectoriesCanFail(t *testing.T) {
	contents := []nfpmContent{
		{Src: "packaging/tokd.toml.example", Dst: "/etc/tokd/tokd.toml", Type: "config|noreplace"},
		{Src: "dist/build/LICENSES", Dst: "/usr/share/licenses/tokd/LICENSES", Packager: "rpm", Type: "license"},
		{Dst: "/usr/share/licenses/tokd", Packager: "deb", Type: "dir"},
		{Src: "dist/tokd", Dst: "/usr/bin/tokd"},
	}
	got := problemsOwningDirectories(contents)
	for _, want := range []string{
		"in /etc/tokd, which has no type: dir entry for deb",
		"in /etc/tokd, which has no type: dir entry for rpm",
		"in /usr/share/licenses/tokd, which has no type: dir entry for rpm",
	} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem about %s; got %q", want, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("got %d problems, want 3: %q", len(got), got)
	}
}

func problemsOwningDirectories(contents []nfpmContent) []string {
	dirs := map[string][]string{} // directory entry -> its packagers ("" for both)
	for _, c := range contents {
		if c.Type == "dir" {
			dirs[path.Clean(c.Dst)] = append(dirs[path.Clean(c.Dst)], c.Packager)
		}
	}
	var problems []string
	for _, c := range contents {
		if c.Type == "dir" {
			continue
		}
		packagers := []string{"deb", "rpm"}
		if c.Packager != "" {
			packagers = []string{c.Packager}
		}
		for dir := path.Dir(path.Clean(c.Dst)); dir != "/"; dir = path.Dir(dir) {
			if !slices.Contains(strings.Split(dir, "/"), "tokd") {
				continue
			}
			for _, p := range packagers {
				if !slices.Contains(dirs[dir], p) && !slices.Contains(dirs[dir], "") {
					problems = append(problems, "nfpm.yaml: "+c.Dst+" is in "+dir+", which has no type: dir entry for "+p)
				}
			}
		}
	}
	slices.Sort(problems)
	return slices.Compact(problems)
}
