package emulator_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokd/tokd/emulator"
)

const read = apiAud + "read"

// ruleCase is one request (or a few) against a fresh harness and the
// answer it must get: status and RFC 6749 error code, "" for success.
type ruleCase struct {
	name   string
	do     func(h *harness) *response
	status int
	code   string
	check  func(t *testing.T, h *harness, r *response)
}

func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			r := tc.do(h)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.raw)
			}
			if got := r.str("error"); got != tc.code {
				t.Fatalf("error %q, want %q; body %s", got, tc.code, r.raw)
			}
			t.Logf("%d %s: %s", r.status, r.str("error"), r.str("error_description"))
			if tc.code != "" && r.str("error_description") == "" {
				t.Errorf("error without error_description: %s", r.raw)
			}
			if tc.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("401 without WWW-Authenticate: Basic (got %q)", r.header.Get("WWW-Authenticate"))
			}
			if tc.check != nil {
				tc.check(t, h, r)
			}
		})
	}
}

// userGrant sends a jwt-bearer request for scope read with app1's Basic
// credentials and a user assertion changed by mods.
func userGrant(mods ...jwtMod) func(h *harness) *response {
	return func(h *harness) *response {
		return h.post(jwtBearer(h.userJWT(mods...), read), app1)
	}
}

// clientGrant sends a client_credentials request authenticated by a client
// assertion changed by mods.
func clientGrant(mods ...jwtMod) func(h *harness) *response {
	return func(h *harness) *response {
		return h.post(withClientAssertion(clientCredentials(read), h.clientJWT(mods...)))
	}
}

func twice(do func(h *harness) *response, want int) func(h *harness) *response {
	return func(h *harness) *response {
		if r := do(h); r.status != want {
			h.t.Fatalf("first request: %d %s", r.status, r.raw)
		}
		return do(h)
	}
}

func TestGrantsAndRequests(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "jwt-bearer with Basic", do: userGrant(), status: 200, check: func(t *testing.T, h *harness, r *response) {
			if r.str("token_type") != "Bearer" || r.json["expires_in"] != float64(3600) || r.json["refresh_token"] != nil {
				t.Errorf("answer %s", r.raw)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			c := h.accessClaims(r.str("access_token"))
			now := h.clk.Now().Unix()
			want := map[string]any{"iss": emulator.OracleAudience, "sub": user, "sub_type": "user",
				"scope": read, "client_id": clientID, "iat": float64(now), "exp": float64(now + 3600)}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("claim %s = %v, want %v", k, c[k], v)
				}
			}
			if aud, _ := c.GetAudience(); len(aud) != 1 || aud[0] != apiAud {
				t.Errorf("aud %v", aud)
			}
			if c["jti"] == "" || c["jti"] == nil {
				t.Error("no jti")
			}
		}},
		{name: "client_credentials", do: func(h *harness) *response {
			return h.post(clientCredentials(read), app1)
		}, status: 200, check: func(t *testing.T, h *harness, r *response) {
			c := h.accessClaims(r.str("access_token"))
			if c["sub"] != clientID || c["sub_type"] != "client" {
				t.Errorf("claims %v", c)
			}
		}},
		{name: "unknown grant", do: func(h *harness) *response {
			return h.post(url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}}, app1)
		}, status: 400, code: "unsupported_grant_type"},
		{name: "authorization_code grant", do: func(h *harness) *response {
			return h.post(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, app1)
		}, status: 400, code: "unsupported_grant_type"},
		{name: "missing grant_type", do: func(h *harness) *response {
			return h.post(url.Values{"scope": {read}}, app1)
		}, status: 400, code: "invalid_request"},
		{name: "repeated parameter", do: func(h *harness) *response {
			return h.postBody("grant_type=client_credentials&scope=a&scope=b", app1)
		}, status: 400, code: "invalid_request"},
		{name: "JSON body", do: func(h *harness) *response {
			return h.postBody(`{"grant_type":"client_credentials"}`, app1, header("Content-Type", "application/json"))
		}, status: 400, code: "invalid_request"},
		{name: "grant not allowed for the app", do: func(h *harness) *response {
			return h.post(jwtBearer(h.userJWT(), read), basic(client2, secret2))
		}, status: 400, code: "unauthorized_client"},
		{name: "missing assertion", do: func(h *harness) *response {
			return h.post(url.Values{"grant_type": {emulator.GrantJWTBearer}, "scope": {read}}, app1)
		}, status: 400, code: "invalid_request"},
		{name: "GET on the token endpoint", do: func(h *harness) *response {
			req, _ := http.NewRequest(http.MethodGet, h.tokenURL(), nil)
			return h.send(req)
		}, status: http.StatusMethodNotAllowed},
	})
}

func TestClientAuthentication(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "Basic with URL-encoded secret", do: func(h *harness) *response {
			return h.post(clientCredentials(read), basic(clientID, secret))
		}, status: 200},
		{name: "Basic with secret not URL-encoded", do: func(h *harness) *response {
			return h.post(clientCredentials(read), rawBasic(clientID, secret))
		}, status: 401, code: "invalid_client"},
		{name: "Basic with wrong secret", do: func(h *harness) *response {
			return h.post(clientCredentials(read), basic(clientID, "wrong"))
		}, status: 401, code: "invalid_client"},
		{name: "Basic for an unknown client", do: func(h *harness) *response {
			return h.post(clientCredentials(read), basic("nobody", secret))
		}, status: 401, code: "invalid_client"},
		{name: "Bearer Authorization header", do: func(h *harness) *response {
			return h.post(clientCredentials(read), header("Authorization", "Bearer abc"))
		}, status: 401, code: "invalid_client"},
		{name: "no client authentication", do: func(h *harness) *response {
			f := clientCredentials(read)
			f.Set("client_id", clientID)
			return h.post(f)
		}, status: 401, code: "invalid_client"},
		{name: "client_secret in the body", do: func(h *harness) *response {
			f := clientCredentials(read)
			f.Set("client_id", clientID)
			f.Set("client_secret", secret)
			return h.post(f)
		}, status: 401, code: "invalid_client"},
		{name: "client_id differs from Basic", do: func(h *harness) *response {
			f := clientCredentials(read)
			f.Set("client_id", client2)
			return h.post(f, app1)
		}, status: 401, code: "invalid_client"},
		{name: "Basic and client assertion", do: func(h *harness) *response {
			return h.post(withClientAssertion(clientCredentials(read), h.clientJWT()), app1)
		}, status: 400, code: "invalid_request"},
		{name: "client assertion by kid", do: clientGrant(), status: 200},
		{name: "client assertion by x5t", do: func(h *harness) *response {
			return clientGrant(hdr("kid", nil), hdr("x5t", emulator.Thumbprint(h.cert)))(h)
		}, status: 200},
		{name: "client assertion without client_id", do: func(h *harness) *response {
			f := withClientAssertion(clientCredentials(read), h.clientJWT())
			f.Del("client_id")
			return h.post(f)
		}, status: 200},
		{name: "client assertion with jwt-bearer grant", do: func(h *harness) *response {
			return h.post(withClientAssertion(jwtBearer(h.userJWT(), read), h.clientJWT()))
		}, status: 200, check: func(t *testing.T, h *harness, r *response) {
			if c := h.accessClaims(r.str("access_token")); c["sub"] != user {
				t.Errorf("sub %v", c["sub"])
			}
		}},
		{name: "client assertion of wrong type", do: func(h *harness) *response {
			f := withClientAssertion(clientCredentials(read), h.clientJWT())
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
			return h.post(f)
		}, status: 401, code: "invalid_client"},
		{name: "client assertion type without assertion", do: func(h *harness) *response {
			f := withClientAssertion(clientCredentials(read), "")
			f.Del("client_assertion")
			return h.post(f)
		}, status: 401, code: "invalid_client"},
		{name: "client assertion iss not the client", do: clientGrant(claim("iss", client2)), status: 401, code: "invalid_client"},
		{name: "client assertion sub not the client", do: clientGrant(claim("sub", user)), status: 401, code: "invalid_client"},
		{name: "client assertion unknown kid", do: clientGrant(hdr("kid", "nope")), status: 401, code: "invalid_client"},
		{name: "client assertion wrong aud", do: clientGrant(claim("aud", "https://elsewhere.example/")), status: 401, code: "invalid_client"},
		{name: "client assertion expired", do: func(h *harness) *response {
			return clientGrant(claim("exp", h.clk.Now().Add(-time.Hour).Unix()), claim("iat", h.clk.Now().Add(-2*time.Hour).Unix()))(h)
		}, status: 401, code: "invalid_client"},
		{name: "client assertion replayed", do: func(h *harness) *response {
			a := h.clientJWT()
			return twice(func(h *harness) *response {
				return h.post(withClientAssertion(clientCredentials(read), a))
			}, 200)(h)
		}, status: 401, code: "invalid_client"},
		{name: "client assertion for an unknown client", do: func(h *harness) *response {
			f := withClientAssertion(clientCredentials(read), h.clientJWT(claim("iss", "nobody"), claim("sub", "nobody")))
			f.Set("client_id", "nobody")
			return h.post(f)
		}, status: 401, code: "invalid_client"},
		{name: "client assertion signed with another client's certificate", do: func(h *harness) *response {
			// app3 imported foreignCert under the same alias; app1 did not.
			return clientGrant(signedBy(h.foreignKey))(h)
		}, status: 401, code: "invalid_client"},
	})
}

func TestAssertionRules(t *testing.T) {
	runRules(t, []ruleCase{
		{name: "valid", do: userGrant(), status: 200},
		{name: "alg HS256", do: userGrant(method(jwt.SigningMethodHS256), signedBy([]byte("0123456789abcdef0123456789abcdef"))), status: 400, code: "invalid_grant"},
		{name: "alg RS384", do: userGrant(method(jwt.SigningMethodRS384)), status: 400, code: "invalid_grant"},
		{name: "alg PS256", do: userGrant(method(jwt.SigningMethodPS256)), status: 400, code: "invalid_grant"},
		{name: "alg none", do: userGrant(method(jwt.SigningMethodNone), signedBy(jwt.UnsafeAllowNoneSignatureType)), status: 400, code: "invalid_grant"},
		{name: "typ not JWT", do: userGrant(hdr("typ", "at+jwt")), status: 400, code: "invalid_grant"},
		{name: "typ absent", do: userGrant(hdr("typ", nil)), status: 200},
		{name: "unknown kid", do: userGrant(hdr("kid", "nope")), status: 400, code: "invalid_grant"},
		{name: "second certificate by kid", do: userGrant(hdr("kid", alias2), signedBy(testKey(t, 1))), status: 200},
		{name: "x5t without kid", do: func(h *harness) *response {
			return userGrant(hdr("kid", nil), hdr("x5t", emulator.Thumbprint(h.cert)))(h)
		}, status: 200},
		{name: "x5t of an unknown certificate", do: func(h *harness) *response {
			return userGrant(hdr("kid", nil), hdr("x5t", emulator.Thumbprint(h.foreignCert)))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "x5t wins over a valid kid", do: func(h *harness) *response {
			return userGrant(hdr("x5t", emulator.Thumbprint(h.foreignCert)))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "x5t wins over an unknown kid", do: func(h *harness) *response {
			return userGrant(hdr("kid", "nope"), hdr("x5t", emulator.Thumbprint(h.cert)))(h)
		}, status: 200},
		{name: "x5t wins over the kid of another certificate", do: func(h *harness) *response {
			// kid names cert2 but x5t names cert: the key of cert verifies.
			return userGrant(hdr("kid", alias2), hdr("x5t", emulator.Thumbprint(h.cert)))(h)
		}, status: 200},
		{name: "neither kid nor x5t", do: userGrant(hdr("kid", nil)), status: 400, code: "invalid_grant"},
		{name: "signed by another key", do: func(h *harness) *response {
			return userGrant(signedBy(h.foreignKey))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "iss not the client", do: userGrant(claim("iss", client2)), status: 400, code: "invalid_grant"},
		{name: "sub unknown user", do: userGrant(claim("sub", "mallory")), status: 400, code: "invalid_grant"},
		{name: "sub missing", do: userGrant(noClaim("sub")), status: 400, code: "invalid_grant"},
		{name: "aud domain URL without slash", do: func(h *harness) *response {
			return userGrant(claim("aud", []string{h.srv.URL}))(h)
		}, status: 200},
		{name: "aud domain URL with slash as a string", do: func(h *harness) *response {
			return userGrant(claim("aud", h.srv.URL+"/"))(h)
		}, status: 200},
		{name: "aud identity.oraclecloud.com", do: userGrant(claim("aud", emulator.OracleAudience)), status: 200},
		{name: "aud identity.oraclecloud.com without slash", do: userGrant(claim("aud", "https://identity.oraclecloud.com")), status: 200},
		{name: "aud token URL", do: func(h *harness) *response {
			return userGrant(claim("aud", h.tokenURL()))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "aud another host", do: userGrant(claim("aud", []string{"https://idcs-other.identity.oraclecloud.com/"})), status: 400, code: "invalid_grant"},
		{name: "aud missing", do: userGrant(noClaim("aud")), status: 400, code: "invalid_grant"},
		{name: "exp missing", do: userGrant(noClaim("exp")), status: 400, code: "invalid_grant"},
		{name: "exp past beyond skew", do: func(h *harness) *response {
			now := h.clk.Now()
			return userGrant(claim("iat", now.Add(-10*time.Minute).Unix()), claim("exp", now.Add(-31*time.Second).Unix()))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "exp past within skew", do: func(h *harness) *response {
			now := h.clk.Now()
			return userGrant(claim("iat", now.Add(-10*time.Minute).Unix()), claim("exp", now.Add(-20*time.Second).Unix()))(h)
		}, status: 200},
		{name: "exp not a number", do: userGrant(claim("exp", "tomorrow")), status: 400, code: "invalid_grant"},
		{name: "iat future beyond skew", do: func(h *harness) *response {
			return userGrant(claim("iat", h.clk.Now().Add(time.Minute).Unix()))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "iat future within skew", do: func(h *harness) *response {
			return userGrant(claim("iat", h.clk.Now().Add(20*time.Second).Unix()))(h)
		}, status: 200},
		{name: "iat absent", do: userGrant(noClaim("iat")), status: 200},
		{name: "nbf future beyond skew", do: func(h *harness) *response {
			return userGrant(claim("nbf", h.clk.Now().Add(time.Minute).Unix()))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "nbf past", do: func(h *harness) *response {
			return userGrant(claim("nbf", h.clk.Now().Add(-time.Minute).Unix()))(h)
		}, status: 200},
		{name: "lifetime one hour", do: func(h *harness) *response {
			return userGrant(claim("exp", h.clk.Now().Add(time.Hour).Unix()))(h)
		}, status: 200},
		{name: "lifetime over one hour", do: func(h *harness) *response {
			return userGrant(claim("exp", h.clk.Now().Add(time.Hour+time.Second).Unix()))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "lifetime without iat over one hour", do: func(h *harness) *response {
			return userGrant(noClaim("iat"), claim("exp", h.clk.Now().Add(2*time.Hour).Unix()))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "jti missing", do: userGrant(noClaim("jti")), status: 400, code: "invalid_grant"},
		{name: "jti replayed", do: func(h *harness) *response {
			a := h.userJWT()
			return twice(func(h *harness) *response { return h.post(jwtBearer(a, read), app1) }, 200)(h)
		}, status: 400, code: "invalid_grant"},
		{name: "jti of a client assertion replayed as a user assertion jti", do: func(h *harness) *response {
			jti := "shared-jti"
			if r := clientGrant(claim("jti", jti))(h); r.status != 200 {
				h.t.Fatalf("client assertion: %d %s", r.status, r.raw)
			}
			return userGrant(claim("jti", jti))(h)
		}, status: 400, code: "invalid_grant"},
		{name: "rejected assertion does not burn its jti", do: func(h *harness) *response {
			if r := userGrant(claim("jti", "j1"), claim("aud", "https://wrong.example/"))(h); r.status != 400 {
				h.t.Fatalf("first: %d %s", r.status, r.raw)
			}
			return userGrant(claim("jti", "j1"))(h)
		}, status: 200},
		{name: "malformed assertion", do: func(h *harness) *response {
			return h.post(jwtBearer("not.a-jwt", read), app1)
		}, status: 400, code: "invalid_grant"},
		{name: "certificate expired", do: func(h *harness) *response {
			h.clk.Advance(2 * 365 * 24 * time.Hour)
			return userGrant()(h)
		}, status: 400, code: "invalid_grant"},
	})
}

func TestScopes(t *testing.T) {
	grant := func(scope string) func(h *harness) *response {
		return func(h *harness) *response { return h.post(jwtBearer(h.userJWT(), scope), app1) }
	}
	expiresIn := func(want float64) func(t *testing.T, h *harness, r *response) {
		return func(t *testing.T, h *harness, r *response) {
			if r.json["expires_in"] != want {
				t.Errorf("expires_in %v, want %v", r.json["expires_in"], want)
			}
			c := h.accessClaims(r.str("access_token"))
			if exp, _ := c.GetExpirationTime(); exp == nil || exp.Unix() != h.clk.Now().Unix()+int64(want) {
				t.Errorf("exp %v, want now+%v", exp, want)
			}
		}
	}
	refreshIssued := func(want bool) func(t *testing.T, h *harness, r *response) {
		return func(t *testing.T, h *harness, r *response) {
			if got := r.str("refresh_token") != ""; got != want {
				t.Errorf("refresh token issued: %v, want %v (%s)", got, want, r.raw)
			}
		}
	}
	runRules(t, []ruleCase{
		{name: "unknown scope", do: grant(apiAud + "delete"), status: 400, code: "invalid_scope"},
		{name: "unknown resource server", do: grant("https://nowhere.example.com/read"), status: 400, code: "invalid_scope"},
		{name: "scope not granted to the app", do: func(h *harness) *response {
			return h.post(clientCredentials(apiAud+"write"), basic(client2, secret2))
		}, status: 400, code: "invalid_scope"},
		{name: "missing scope", do: grant(""), status: 400, code: "invalid_scope"},
		{name: "only modifiers", do: grant("offline_access " + emulator.ScopeMultiResource), status: 400, code: "invalid_scope"},
		{name: "two resource servers", do: grant(read + " " + otherAud + "read"), status: 400, code: "invalid_scope",
			check: func(t *testing.T, h *harness, r *response) {
				d := r.str("error_description")
				if !strings.Contains(d, "multiple resource servers") || !strings.Contains(d, emulator.ScopeMultiResource) {
					t.Errorf("description %q", d)
				}
			}},
		{name: "identity domain and a resource server", do: grant(emulator.ScopeMyScopes + " " + read), status: 400, code: "invalid_scope"},
		{name: "two resource servers with multiresourcescope", do: grant(read + " " + otherAud + "read " + apiAud + "write " + emulator.ScopeMultiResource),
			status: 200, check: func(t *testing.T, h *harness, r *response) {
				list, _ := r.json["tokenResponses"].([]any)
				if len(list) != 2 || r.json["access_token"] != nil {
					t.Fatalf("answer %s", r.raw)
				}
				wants := []struct{ aud, scope string }{{apiAud, read + " " + apiAud + "write"}, {otherAud, otherAud + "read"}}
				for i, w := range wants {
					m := list[i].(map[string]any)
					c := h.accessClaims(m["access_token"].(string))
					if aud, _ := c.GetAudience(); len(aud) != 1 || aud[0] != w.aud || c["scope"] != w.scope {
						t.Errorf("token %d: aud %v scope %v, want %s %s", i, aud, c["scope"], w.aud, w.scope)
					}
					if m["token_type"] != "Bearer" || m["expires_in"] != float64(3600) {
						t.Errorf("token %d: %v", i, m)
					}
				}
			}},
		{name: "multiresourcescope with one resource server", do: grant(read + " " + emulator.ScopeMultiResource),
			status: 200, check: func(t *testing.T, h *harness, r *response) {
				if r.json["tokenResponses"] != nil || r.str("access_token") == "" {
					t.Errorf("answer %s", r.raw)
				}
			}},
		{name: "myscopes", do: grant(emulator.ScopeMyScopes), status: 200, check: func(t *testing.T, h *harness, r *response) {
			c := h.accessClaims(r.str("access_token"))
			if aud, _ := c.GetAudience(); len(aud) != 1 || aud[0] != h.srv.URL || c["scope"] != emulator.ScopeMyScopes {
				t.Errorf("aud %v scope %v", aud, c["scope"])
			}
		}},
		{name: "role URL-encoded", do: grant("urn:opc:idm:role.User%20Administrator " + emulator.ScopeMyScopes), status: 200},
		{name: "role not granted", do: grant("urn:opc:idm:role.Identity%20Domain%20Administrator"), status: 400, code: "invalid_scope"},
		{name: "role badly encoded", do: grant("urn:opc:idm:role.User%2"), status: 400, code: "invalid_scope"},
		{name: "expiry shortens", do: grant(read + " urn:opc:resource:expiry=120"), status: 200, check: expiresIn(120)},
		{name: "expiry below 60 s", do: grant(read + " urn:opc:resource:expiry=10"), status: 200, check: expiresIn(60)},
		{name: "expiry does not lengthen", do: grant(read + " urn:opc:resource:expiry=86400"), status: 200, check: expiresIn(3600)},
		{name: "expiry not a number", do: grant(read + " urn:opc:resource:expiry=soon"), status: 400, code: "invalid_scope"},
		{name: "resource server lifetime", do: grant(shortAud + "s"), status: 200, check: expiresIn(600)},
		{name: "app lifetime shorter", do: func(h *harness) *response {
			return h.post(clientCredentials(read), basic(client2, secret2))
		}, status: 200, check: expiresIn(300)},
		{name: "consumer::all combined", do: grant(emulator.ScopeConsumerAll + " " + read), status: 400, code: "invalid_scope"},
		{name: "consumer::all alone", do: grant(emulator.ScopeConsumerAll), status: 200},
		{name: "offline_access", do: grant(read + " offline_access"), status: 200, check: refreshIssued(true)},
		{name: "offline_access on a server without refresh", do: grant(otherAud + "read offline_access"), status: 200, check: refreshIssued(false)},
		{name: "offline_access for the identity domain", do: grant(emulator.ScopeMyScopes + " offline_access"), status: 200, check: refreshIssued(true)},
		{name: "offline_access without the refresh grant", do: func(h *harness) *response {
			return h.post(clientCredentials(read+" offline_access"), basic(client3, secret3))
		}, status: 200, check: refreshIssued(false)},
		{name: "no offline_access", do: grant(read), status: 200, check: refreshIssued(false)},
		{name: "offline_access with multiresourcescope", do: grant(read + " " + otherAud + "read offline_access " + emulator.ScopeMultiResource),
			status: 200, check: func(t *testing.T, h *harness, r *response) {
				list, _ := r.json["tokenResponses"].([]any)
				if len(list) != 2 {
					t.Fatalf("answer %s", r.raw)
				}
				if list[0].(map[string]any)["refresh_token"] == nil || list[1].(map[string]any)["refresh_token"] != nil {
					t.Errorf("refresh tokens: want one for %s only: %s", apiAud, r.raw)
				}
			}},
	})
}

// withRefresh obtains a refresh token for scope and passes it to then.
func withRefresh(scope string, then func(h *harness, rt string) *response) func(h *harness) *response {
	return func(h *harness) *response {
		r := h.post(jwtBearer(h.userJWT(), scope+" offline_access"), app1)
		rt := r.str("refresh_token")
		if rt == "" {
			h.t.Fatalf("no refresh token: %d %s", r.status, r.raw)
		}
		return then(h, rt)
	}
}

func TestRefresh(t *testing.T) {
	write := apiAud + "write"
	runRules(t, []ruleCase{
		{name: "refresh", do: withRefresh(read, func(h *harness, rt string) *response {
			return h.post(refresh(rt, ""), app1)
		}), status: 200, check: func(t *testing.T, h *harness, r *response) {
			c := h.accessClaims(r.str("access_token"))
			if c["sub"] != user || c["sub_type"] != "user" || c["scope"] != read || r.str("refresh_token") == "" {
				t.Errorf("claims %v, answer %s", c, r.raw)
			}
		}},
		{name: "old refresh token after rotation", do: withRefresh(read, func(h *harness, rt string) *response {
			r := h.post(refresh(rt, ""), app1)
			if r.status != 200 || r.str("refresh_token") == rt {
				h.t.Fatalf("first refresh: %d, rotated %v", r.status, r.str("refresh_token") != rt)
			}
			return h.post(refresh(rt, ""), app1)
		}), status: 400, code: "invalid_grant"},
		{name: "new refresh token after rotation", do: withRefresh(read, func(h *harness, rt string) *response {
			r := h.post(refresh(rt, ""), app1)
			return h.post(refresh(r.str("refresh_token"), ""), app1)
		}), status: 200},
		{name: "expired", do: withRefresh(read, func(h *harness, rt string) *response {
			h.clk.Advance(7*24*time.Hour + time.Second)
			return h.post(refresh(rt, ""), app1)
		}), status: 400, code: "invalid_grant"},
		{name: "rotation keeps the original expiry", do: withRefresh(read, func(h *harness, rt string) *response {
			h.clk.Advance(6 * 24 * time.Hour)
			r := h.post(refresh(rt, ""), app1)
			h.tokenOK(r)
			h.clk.Advance(24 * time.Hour)
			return h.post(refresh(r.str("refresh_token"), ""), app1)
		}), status: 400, code: "invalid_grant"},
		{name: "another client", do: withRefresh(read, func(h *harness, rt string) *response {
			return h.post(refresh(rt, ""), basic(client2, secret2))
		}), status: 400, code: "invalid_grant"},
		{name: "another client does not consume it", do: withRefresh(read, func(h *harness, rt string) *response {
			h.post(refresh(rt, ""), basic(client2, secret2))
			return h.post(refresh(rt, ""), app1)
		}), status: 200},
		{name: "unknown refresh token", do: func(h *harness) *response {
			return h.post(refresh("made-up", ""), app1)
		}, status: 400, code: "invalid_grant"},
		{name: "missing refresh token", do: func(h *harness) *response {
			return h.post(url.Values{"grant_type": {emulator.GrantRefreshToken}}, app1)
		}, status: 400, code: "invalid_request"},
		{name: "app without the refresh grant", do: withRefresh(read, func(h *harness, rt string) *response {
			return h.post(refresh(rt, ""), basic(client3, secret3))
		}), status: 400, code: "unauthorized_client"},
		{name: "narrower scope", do: withRefresh(read+" "+write, func(h *harness, rt string) *response {
			r := h.post(refresh(rt, read), app1)
			h.tokenOK(r)
			if c := h.accessClaims(r.str("access_token")); c["scope"] != read {
				h.t.Errorf("narrowed scope %v", c["scope"])
			}
			// The rotated token keeps the original scope.
			return h.post(refresh(r.str("refresh_token"), write), app1)
		}), status: 200},
		{name: "wider scope", do: withRefresh(read, func(h *harness, rt string) *response {
			return h.post(refresh(rt, read+" "+write), app1)
		}), status: 400, code: "invalid_scope"},
		{name: "scope of another resource server", do: withRefresh(read, func(h *harness, rt string) *response {
			return h.post(refresh(rt, shortAud+"s"), app1)
		}), status: 400, code: "invalid_scope"},
		{name: "rejected scope does not consume the token", do: withRefresh(read, func(h *harness, rt string) *response {
			h.post(refresh(rt, shortAud+"s"), app1)
			return h.post(refresh(rt, ""), app1)
		}), status: 200},
		{name: "expiry scope", do: withRefresh(read, func(h *harness, rt string) *response {
			return h.post(refresh(rt, read+" urn:opc:resource:expiry=300"), app1)
		}), status: 200, check: func(t *testing.T, h *harness, r *response) {
			if r.json["expires_in"] != float64(300) {
				t.Errorf("expires_in %v", r.json["expires_in"])
			}
		}},
		{name: "identity domain refresh", do: withRefresh(emulator.ScopeMyScopes, func(h *harness, rt string) *response {
			return h.post(refresh(rt, ""), app1)
		}), status: 200, check: func(t *testing.T, h *harness, r *response) {
			if aud, _ := h.accessClaims(r.str("access_token")).GetAudience(); len(aud) != 1 || aud[0] != h.srv.URL {
				t.Errorf("aud %v", aud)
			}
		}},
		{name: "client_credentials refresh", do: func(h *harness) *response {
			r := h.post(clientCredentials(read+" offline_access"), basic(client2, secret2))
			return h.post(refresh(r.str("refresh_token"), ""), basic(client2, secret2))
		}, status: 200, check: func(t *testing.T, h *harness, r *response) {
			if c := h.accessClaims(r.str("access_token")); c["sub"] != client2 || c["sub_type"] != "client" {
				t.Errorf("claims %v", c)
			}
		}},
	})
}
