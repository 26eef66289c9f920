package main

import (
	"fmt"
	"net/url"
	"strings"
)

// domainSignature turns the secure-signature link of a domain on or off:
// tandem domain signature NAME on|off.
func (c *cli) domainSignature(rest []string) error {
	if len(rest) != 2 || (rest[1] != "on" && rest[1] != "off") {
		return c.usageErr("usage: domain signature NAME on|off")
	}
	on := rest[1] == "on"
	if err := c.call("PUT", "/api/domains/"+url.PathEscape(rest[0])+"/signature", map[string]bool{"enabled": on}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "secure signature of %s is %s\n", strings.ToLower(rest[0]), rest[1])
	return nil
}

// publicURLFlag checks --public-url: an http or https URL with a host and
// no query, since the links are made by appending /v/TOKEN.
func publicURLFlag(dst *string) func(string) error {
	return func(v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("want http(s)://HOST[:PORT][/PATH], e.g. https://mail.example.com; got %q", v)
		}
		*dst = strings.TrimSuffix(v, "/")
		return nil
	}
}
