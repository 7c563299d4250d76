package client

// pathEscape is net/url's PathEscape: s made safe as one path segment.
func pathEscape(s string) string { return escape(s, false) }

// queryEscape is net/url's QueryEscape: s made safe as a query value.
func queryEscape(s string) string { return escape(s, true) }

// escape percent-encodes s as net/url does (FuzzEscape checks it):
// letters, digits and -_.~ stay; in a path segment so do $&+:=@; in a
// query value a space becomes '+'; every other byte becomes %XX.
// (net/url is left out of tokctl for what its initialisation costs.)
func escape(s string, query bool) string {
	const upperhex = "0123456789ABCDEF"
	var t []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		keep := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~'
		if !query {
			keep = keep || c == '$' || c == '&' || c == '+' || c == ':' || c == '=' || c == '@'
		}
		switch {
		case keep:
			if t != nil {
				t = append(t, c)
			}
			continue
		case t == nil:
			t = append(make([]byte, 0, len(s)+16), s[:i]...)
		}
		if query && c == ' ' {
			t = append(t, '+')
		} else {
			t = append(t, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	if t == nil {
		return s
	}
	return string(t)
}
