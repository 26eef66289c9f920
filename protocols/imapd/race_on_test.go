//go:build race

package imapd

// timeSlack stretches time bounds of tests under the race detector,
// which slows tight loops tenfold and more.
const timeSlack = 20
