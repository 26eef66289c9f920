//go:build !race

package imapd

// timeSlack stretches time bounds of tests under the race detector.
const timeSlack = 1
