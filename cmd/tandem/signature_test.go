package main

import "testing"

func TestPublicURLFlag(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{"https://mail.example.com", "https://mail.example.com", false},
		{"http://mail.example.com:8080/", "http://mail.example.com:8080", false},
		{"https://example.com/mail", "https://example.com/mail", false},
		{"mail.example.com", "", true},
		{"ftp://mail.example.com", "", true},
		{"https://", "", true},
		{"https://x.test/?a=b", "", true},
		{"https://x.test/#f", "", true},
	}
	for _, c := range cases {
		got := ""
		err := publicURLFlag(&got)(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("publicURLFlag(%q) = %q, %v", c.in, got, err)
		}
	}
}
