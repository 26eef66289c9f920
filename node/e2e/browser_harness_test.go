package e2e

// Browser test harness (issue 7): a real headless chromium driven by
// chromedp against a node started from the real binary. W2's wizard test
// and the web admin tests use it:
//
//	s := startServer(t, t.TempDir())
//	b := newBrowser(t, "http://"+s.addr("http"))
//	b.login("admin@example.test", "pw")
//	b.run(chromedp.Navigate(b.url("/domains")), ...)
//	b.screenshot("domains")
//
// Screenshots go to $TANDEM_SCREENSHOTS (created if needed) or a temp dir.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

type browser struct {
	t      testing.TB
	ctx    context.Context
	base   string
	shots  string
	cancel func()
}

// chromiumPath finds Debian's chromium. Missing: skip when not root (a
// developer box), fail as root (CI installs it from .ci/test.sh).
func chromiumPath(t testing.TB) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("chromium not installed: apt-get install chromium to run the browser tests")
	}
	t.Fatal("chromium not installed (CI installs it through .ci/test.sh)")
	return ""
}

// newBrowser starts headless chromium (no sandbox as root, no background
// networking) for base, e.g. "http://127.0.0.1:8080".
func newBrowser(t testing.TB, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 860),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first Run starts the browser and must not carry a timeout (it
	// would stop the browser); bound it from outside instead.
	timer := time.AfterFunc(60*time.Second, cancel)
	err := chromedp.Do(ctx)
	timer.Stop()
	if err != nil {
		cancel()
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	dir := os.Getenv("TANDEM_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, ctx: ctx, base: strings.TrimRight(base, "/"), shots: dir, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.cancel)
	return b
}

func (b *browser) url(path string) string { return b.base + path }

// with returns the same browser reporting to t (for subtests).
func (b *browser) with(t testing.TB) *browser {
	c := *b
	c.t = t
	return &c
}

// submit submits a form the way a user does (requestSubmit fires the
// submit event the page's script handles; chromedp.Submit would not).
func (b *browser) submit(formCSS string) {
	b.t.Helper()
	b.run(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).requestSubmit()`, formCSS)))
}

// run runs steps with a 60 s bound and fails the test on error.
func (b *browser) run(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.screenshot("failure-" + strings.ReplaceAll(b.t.Name(), "/", "-"))
		b.t.Fatalf("browser: %v", err)
	}
}

// evalJS evaluates a JavaScript expression in the page.
func evalJS[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits (up to timeout) until a JavaScript expression is truthy.
func (b *browser) waitJS(expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout),
		chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		b.screenshot("failure-" + strings.ReplaceAll(b.t.Name(), "/", "-"))
		b.t.Fatalf("browser: waiting for %s: %v", expr, err)
	}
}

// text returns the textContent of the first element matching a CSS selector.
func (b *browser) text(css string) string {
	b.t.Helper()
	return evalJS[string](b, fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, css))
}

// login logs in through the form, answering the captcha when one shows.
func (b *browser) login(addr, pw string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.url("/login")), chromedp.WaitVisible(chromedp.ID("address")))
	b.fillLogin(addr, pw, true)
	b.run(chromedp.WaitVisible(chromedp.CSS("nav")))
}

// fillLogin fills and submits the login form on the current page; with
// solveCaptcha false it answers a captcha wrongly.
func (b *browser) fillLogin(addr, pw string, solveCaptcha bool) {
	b.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.SetValue(chromedp.ID("address"), addr),
		chromedp.SetValue(chromedp.ID("password"), pw),
	}
	if q := b.text("#captcha-question"); q != "" {
		var x, y int
		fmt.Sscanf(q, "%d + %d", &x, &y)
		if !solveCaptcha {
			x++
		}
		steps = append(steps, chromedp.SetValue(chromedp.ID("captcha"), fmt.Sprint(x+y)))
	}
	steps = append(steps, chromedp.Submit(chromedp.ID("password")))
	b.run(steps...)
}

// shotElement saves a PNG of the first element matching css.
func (b *browser) shotElement(name, css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(css)))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
	return p
}

// screenshot saves a full-page PNG named name.png in the screenshot dir.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
	return p
}
