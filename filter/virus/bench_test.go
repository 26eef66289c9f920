package virus_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/virus"
	"github.com/tandemmail/tandem/filter/virus/clamdtest"
)

// BenchmarkClamdStage measures the virus stage against a real clamd
// (TANDEM_BENCH_CLAMD=1): a 20 KB clean text message and a message with a
// zip attachment, scanned by 4 goroutines at once as SMTP sessions would.
func BenchmarkClamdStage(b *testing.B) {
	if os.Getenv("TANDEM_BENCH_CLAMD") == "" {
		b.Skip("set TANDEM_BENCH_CLAMD=1 to run against a real clamd")
	}
	srv := clamdtest.Start(b, clamdtest.Options{})
	eng, err := virus.ParseClamdAddr(srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	st := &virus.Stage{Engine: eng}
	text := "From: a@example.org\r\nSubject: report\r\n\r\n" + strings.Repeat("The quarterly numbers look fine, see you Monday.\r\n", 400)
	zipped := mime("report.zip", "application/zip", zipOfB(b, "report.txt", []byte(text)))
	for _, tc := range []struct{ name, msg string }{{"text20k", text}, {"zip", zipped}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetParallelism(2) // 2 × GOMAXPROCS goroutines
			b.SetBytes(int64(len(tc.msg)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					v := st.CheckMessage(context.Background(), &filter.Envelope{}, nil, strings.NewReader(tc.msg), int64(len(tc.msg)))
					if v.Action != filter.ActionAccept {
						b.Fatalf("%v %s", v.Action, v.Reason)
					}
				}
			})
		})
	}
}
