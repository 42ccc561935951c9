package config

import "strings"

// Identity match scores, after strongSwan's id_match_t.
const (
	matchNone    = 0
	matchAny     = 1
	matchPerfect = 20
)

// idsMatch is the best score of id against a secret's ids; no ids match any id.
func idsMatch(ids []string, id string) int {
	if len(ids) == 0 {
		return matchAny
	}
	best := matchNone
	for _, owner := range ids {
		if m := idMatch(owner, id); m > best {
			best = m
		}
	}
	return best
}

// idMatch scores how well a secret's id (owner) matches the identity id. Identities
// compare case-insensitively; "*" in owner matches any run of characters and scores
// less than an exact match; %any on either side matches anything, weakest.
func idMatch(owner, id string) int {
	switch {
	case id == "":
		return matchNone
	case strings.EqualFold(owner, id):
		return matchPerfect
	case id == AnyID || owner == AnyID:
		return matchAny
	case strings.Contains(owner, "*"):
		if wildcardMatch(strings.ToLower(owner), strings.ToLower(id)) {
			if m := matchPerfect - strings.Count(owner, "*"); m > matchAny {
				return m
			}
			return matchAny + 1
		}
	}
	return matchNone
}

// wildcardMatch matches s against pattern, where "*" matches any run of characters.
func wildcardMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return strings.HasSuffix(s, last)
}
