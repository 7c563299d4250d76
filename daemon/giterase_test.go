package daemon_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestGitErase: a refusal (POST /v1/git/refused) forgets the profile's
// token only when the refused secret is that token, compared in the
// daemon; another secret, or a refusal of a token already replaced, keeps
// the token and sends nothing to the endpoint. DELETE /v1/git forgets it
// whatever it is, as before, and a body that is not a refusal is a 400
// that quotes nothing.
func TestGitErase(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci", "[profiles.ci.git]", `urls = ["https://git.example.com/team/"]`))
	d := e.start()
	const url = "https://git.example.com/team/repo.git"

	first, err := d.client.Git(url)
	if err != nil {
		t.Fatal(err)
	}
	e.saw(first.AccessToken)
	before := e.requests()
	for _, refused := range []string{"someone-elses-password", first.AccessToken + "x"} {
		if err := d.client.GitRefused(url, refused); err != nil {
			t.Fatalf("erase of another secret: %v", err)
		}
	}
	if again, err := d.client.Git(url); err != nil || again.AccessToken != first.AccessToken || e.requests() != before {
		t.Fatalf("after erases of other secrets: %v, same token %v, %d requests; want the first token and none",
			err, err == nil && again.AccessToken == first.AccessToken, e.requests()-before)
	}

	if err := d.client.GitRefused(url, first.AccessToken); err != nil {
		t.Fatalf("erase of the token: %v", err)
	}
	second, err := d.client.Git(url)
	if err != nil || second.AccessToken == first.AccessToken {
		t.Fatalf("after the token's erase: %v; want a new token", err)
	}
	e.saw(second.AccessToken)
	before = e.requests()
	// The first token's refusal, arriving late, keeps its successor.
	if err := d.client.GitRefused(url, first.AccessToken); err != nil {
		t.Fatal(err)
	}
	if again, err := d.client.Git(url); err != nil || again.AccessToken != second.AccessToken || e.requests() != before {
		t.Fatalf("a late erase of the first token dropped the second (%v)", err)
	}

	// No secret: forgotten whatever it is.
	if err := d.client.GitErase(url); err != nil {
		t.Fatal(err)
	}
	third, err := d.client.Git(url)
	if err != nil || third.AccessToken == second.AccessToken {
		t.Fatalf("after an erase without a secret: %v; want a new token", err)
	}
	e.saw(third.AccessToken)

	hc := rawClient(d.socket)
	for _, body := range []string{``, `not json`, `{"refused":""}`, `{"refused":"x","more":1}`, `{"refused":"x"} {}`, `{"password":"` + third.AccessToken + `"}`} {
		req, _ := http.NewRequest("POST", "http://tokd/v1/git/refused?url="+url, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(got, []byte(third.AccessToken)) {
			t.Errorf("refusal with body %.20q: %d %s; want 400 quoting nothing", body, resp.StatusCode, got)
		}
	}
	if again, err := d.client.Git(url); err != nil || again.AccessToken != third.AccessToken {
		t.Errorf("bad erase bodies changed the token (%v)", err)
	}
}
