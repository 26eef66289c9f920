package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// record is one parsed RESULT line.
type record map[string]string

// parseResults reads RESULT lines; everything else is ignored.
func parseResults(r io.Reader) ([]record, error) {
	var out []record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "RESULT ") {
			continue
		}
		rec := record{}
		for _, f := range strings.Fields(line[len("RESULT "):]) {
			if k, v, ok := strings.Cut(f, "="); ok {
				rec[k] = v
			}
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// median of the numeric values of key over recs; ok is false if none parse.
func median(recs []record, key string) (float64, bool) {
	var vs []float64
	for _, r := range recs {
		if v, err := strconv.ParseFloat(r[key], 64); err == nil {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	sort.Float64s(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// table groups records by (mode, name, key fields).
type table struct {
	recs []record
}

func (t table) find(match map[string]string) []record {
	var out []record
next:
	for _, r := range t.recs {
		for k, v := range match {
			if r[k] != v {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func fmtRate(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// cell renders the median of key, flagging runs that did not end "ok".
func cell(recs []record, key string) (string, float64, bool) {
	if len(recs) == 0 {
		return "not measured", 0, false
	}
	v, ok := median(recs, key)
	bad := 0
	for _, r := range recs {
		if r["status"] != "ok" {
			bad++
		}
	}
	if !ok {
		return fmt.Sprintf("failed (%s)", recs[0]["status"]), 0, false
	}
	s := fmtRate(v)
	if bad > 0 {
		s += fmt.Sprintf(" (%d/%d runs %s)", bad, len(recs), recs[0]["status"])
	}
	return s, v, true
}

func ratio(a, b float64, okA, okB bool) string {
	if !okA || !okB || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func runReport(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	smtpNames := fs.String("smtp-names", "tandem,postfix+dovecot,maddy", "SMTP columns; the first is the one compared")
	imapNames := fs.String("imap-names", "tandem,dovecot,maddy", "IMAP columns; the first is the one compared")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var t table
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		recs, err := parseResults(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		t.recs = append(t.recs, recs...)
	}
	writeSMTPTable(stdout, t, strings.Split(*smtpNames, ","))
	writeFsyncTable(stdout, t, strings.Split(*smtpNames, ","))
	writeIMAPTable(stdout, t, strings.Split(*imapNames, ","))
	return nil
}

// distinct returns the values of key among recs of mode, in numeric order.
func distinct(t table, mode, key string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range t.find(map[string]string{"mode": mode}) {
		if v := r[key]; v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, ea := strconv.Atoi(out[i])
		b, eb := strconv.Atoi(out[j])
		if ea == nil && eb == nil {
			return a < b
		}
		return out[i] < out[j]
	})
	return out
}

func sizeLabel(s string) string {
	n, err := strconv.Atoi(s)
	if err == nil && n%1024 == 0 {
		return fmt.Sprintf("%d KB", n/1024)
	}
	return s + " B"
}

func header(w io.Writer, first []string, names []string, unit string) {
	cols := append([]string{}, first...)
	for _, n := range names {
		cols = append(cols, strings.TrimSpace(n+" "+unit))
	}
	for _, n := range names[1:] {
		cols = append(cols, names[0]+" / "+n)
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
}

func writeSMTPTable(w io.Writer, t table, names []string) {
	sizes, conns := distinct(t, "smtp", "size"), distinct(t, "smtp", "conns")
	if len(sizes) == 0 {
		return
	}
	fmt.Fprintln(w, "SMTP intake, messages/s end-to-end (accepted and counted in the INBOXes over IMAP); accept-only rate in brackets")
	fmt.Fprintln(w)
	header(w, []string{"size", "conns"}, names, "e2e (accept)")
	for _, s := range sizes {
		for _, c := range conns {
			row := []string{sizeLabel(s), c}
			vals := make([]float64, len(names))
			oks := make([]bool, len(names))
			for i, n := range names {
				recs := t.find(map[string]string{"mode": "smtp", "name": n, "size": s, "conns": c})
				txt, v, ok := cell(recs, "e2e_rate")
				if acc, okAcc := median(recs, "accept_rate"); okAcc {
					txt += " (" + fmtRate(acc) + ")"
				}
				row, vals[i], oks[i] = append(row, txt), v, ok
			}
			for i := 1; i < len(names); i++ {
				row = append(row, ratio(vals[0], vals[i], oks[0], oks[i]))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
	}
	fmt.Fprintln(w)
}

func writeFsyncTable(w io.Writer, t table, names []string) {
	if len(t.find(map[string]string{"mode": "fsync"})) == 0 {
		return
	}
	fmt.Fprintln(w, "fsync-family system calls per delivered message (strace -f -c, all processes of the server)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | messages traced | fsync | fdatasync | other sync calls | per message |\n|---|---|---|---|---|---|")
	for _, n := range names {
		recs := t.find(map[string]string{"mode": "fsync", "name": n})
		if len(recs) == 0 {
			fmt.Fprintf(w, "| %s | not measured | | | | |\n", n)
			continue
		}
		r := recs[len(recs)-1]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", n, r["messages"], r["fsync"], r["fdatasync"], r["other"], r["per_msg"])
	}
	fmt.Fprintln(w)
}

func writeIMAPTable(w io.Writer, t table, names []string) {
	ops := distinct(t, "imap", "op")
	if len(ops) == 0 {
		return
	}
	fmt.Fprintln(w, "IMAP, commands/s (messages/s for fetches in brackets; avg hits per search in brackets)")
	fmt.Fprintln(w)
	header(w, []string{"operation", "conns"}, names, "")
	for _, op := range ops {
		for _, c := range distinct(t, "imap", "conns") {
			row := []string{op, c}
			vals := make([]float64, len(names))
			oks := make([]bool, len(names))
			for i, n := range names {
				recs := t.find(map[string]string{"mode": "imap", "name": n, "op": op, "conns": c})
				txt, v, ok := cell(recs, "ops_rate")
				if strings.HasPrefix(op, "fetch") {
					if m, okM := median(recs, "msgs_rate"); okM {
						txt += " (" + fmtRate(m) + " msg/s)"
					}
				} else if h, okH := median(recs, "avg_hits"); okH {
					txt += fmt.Sprintf(" (%.1f hits)", h)
				}
				row, vals[i], oks[i] = append(row, txt), v, ok
			}
			for i := 1; i < len(names); i++ {
				row = append(row, ratio(vals[0], vals[i], oks[0], oks[i]))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
	}
	fmt.Fprintln(w)
}
