package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserPages drives the DNS and Filters pages (webui/pages_more.go)
// in headless chromium against the real binary: a TXT record added on the
// DNS page (its value an XSS payload, which must show as text) is listed;
// a block-list entry added on the Filters page is listed; every page fits
// a 390x844 phone viewport without horizontal page overflow. Screenshots
// go to $TANDEM_SCREENSHOTS (docs/screenshots: dns.png, filters.png,
// phone-dashboard.png, phone-dns.png).
func TestBrowserPages(t *testing.T) {
	chromiumPath(t)
	s := startServer(t, t.TempDir())
	s.mustCLI("account", "add", "boss@example.test", "--password", "admin-pw-1", "--admin")
	s.mustCLI("setup", "done") // "/" is the dashboard, not the wizard
	b := newBrowser(t, "http://"+s.addr("http"))
	b.login("boss@example.test", "admin-pw-1")
	noXSS := func(b *browser, where string) {
		b.t.Helper()
		if evalJS[bool](b, `window.__xss !== undefined`) {
			b.t.Errorf("%s: an XSS payload ran", where)
		}
	}
	// Viewport-sized screenshots keep the committed PNGs small.
	shot := func(b *browser, name string) {
		b.t.Helper()
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		defer cancel()
		buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(b.shots, name+".png"), buf, 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.t.Logf("screenshot %s.png: %d bytes", name, len(buf))
	}

	t.Run("dns", func(t *testing.T) {
		b := b.with(t)
		b.run(chromedp.EmulateViewport(1100, 900))
		b.run(chromedp.Navigate(b.url("/dns")), chromedp.WaitVisible(chromedp.ID("dns-form")))
		b.waitJS(`document.querySelector("#dns-records tbody").rows.length > 0`, 20*time.Second)
		if v := evalJS[string](b, `document.getElementById("dns-domain").value`); v != "example.test" {
			t.Fatalf("domain picker: %q", v)
		}
		const payload = `"v=test <img src=x onerror=window.__xss=1>"`
		b.run(chromedp.SetValue(chromedp.ID("dns-name"), "_w3check"),
			chromedp.SetValue(chromedp.ID("dns-type"), "TXT"),
			chromedp.SetValue(chromedp.ID("dns-value"), payload))
		b.submit("#dns-form")
		b.waitJS(`document.querySelector("#dns-records tbody").textContent.includes("_w3check.example.test.")`, 20*time.Second)
		if got := b.text("#dns-records tbody"); !strings.Contains(got, `<img src=x onerror=window.__xss=1>`) {
			t.Errorf("TXT value not shown as text: %q", got)
		}
		if n := evalJS[int](b, `document.querySelectorAll("#dns-records img").length`); n != 0 {
			t.Errorf("record value became markup (%d img elements)", n)
		}
		// A bad value: the server's validation error is shown.
		b.run(chromedp.SetValue(chromedp.ID("dns-name"), "bad"), chromedp.SetValue(chromedp.ID("dns-type"), "A"),
			chromedp.SetValue(chromedp.ID("dns-value"), "not-an-address"))
		b.submit("#dns-form")
		b.waitJS(`document.querySelector("#dns-form .error").textContent !== ""`, 20*time.Second)
		// The records to publish elsewhere include the record just added.
		b.waitJS(`document.querySelector("#dns-publish tbody").textContent.includes("_w3check")`, 20*time.Second)
		// Edit (PUT) and delete a record through its row's buttons.
		b.run(chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
		rowBtn := func(name, label string) string {
			return fmt.Sprintf(`Array.from(document.querySelectorAll("#dns-records tbody tr")).find(r => r.cells[0].textContent === %q && r.cells[1].textContent === "TXT").querySelector("td.actions").querySelectorAll("button")[%s].click()`, name, label)
		}
		b.run(chromedp.SetValue(chromedp.ID("dns-name"), "_w3edit"), chromedp.SetValue(chromedp.ID("dns-type"), "TXT"),
			chromedp.SetValue(chromedp.ID("dns-value"), `"before"`))
		b.submit("#dns-form")
		b.waitJS(`document.querySelector("#dns-records tbody").textContent.includes("_w3edit.example.test.")`, 20*time.Second)
		b.run(chromedp.Evaluate[chromedp.Void](rowBtn("_w3edit.example.test.", "0")))
		if v := evalJS[string](b, `document.getElementById("dns-value").value`); v != `"before"` {
			t.Fatalf("edit did not fill the form: %q", v)
		}
		b.run(chromedp.SetValue(chromedp.ID("dns-value"), `"after"`))
		b.submit("#dns-form")
		b.waitJS(`document.querySelector("#dns-records tbody").textContent.includes('"after"')`, 20*time.Second)
		if strings.Contains(b.text("#dns-records tbody"), `"before"`) {
			t.Error("edit kept the old value")
		}
		b.run(chromedp.Evaluate[chromedp.Void](rowBtn("_w3edit.example.test.", "1")))
		b.waitJS(`!document.querySelector("#dns-records tbody").textContent.includes("_w3edit")`, 20*time.Second)
		noXSS(b, "DNS page")
		b.run(chromedp.Evaluate[chromedp.Void](`document.getElementById("dns-form").reset(); document.querySelector("#dns-form .error").textContent = ""`))
		// Show the new record and the form below it.
		b.run(chromedp.Evaluate[chromedp.Void](`Array.from(document.querySelectorAll("#dns-records tbody tr")).find(r => r.textContent.includes("_w3check")).scrollIntoView({block: "center"})`))
		shot(b, "dns")
	})

	t.Run("filters", func(t *testing.T) {
		b := b.with(t)
		b.run(chromedp.Navigate(b.url("/filters")), chromedp.WaitVisible(chromedp.ID("lists-form")))
		b.run(chromedp.SetValue(chromedp.ID("lists-scope"), "global"),
			chromedp.SetValue(chromedp.ID("lists-list"), "block"),
			chromedp.SetValue(chromedp.ID("lists-entry"), "spammer.example"))
		b.submit("#lists-form")
		b.waitJS(`document.querySelector("#lists tbody").textContent.includes("spammer.example")`, 20*time.Second)
		if got := b.text("#lists tbody"); !strings.Contains(got, "global") || !strings.Contains(got, "block") {
			t.Errorf("list row: %q", got)
		}
		// A bad entry is refused with the server's message.
		b.run(chromedp.SetValue(chromedp.ID("lists-entry"), "<script>window.__xss=1</script>"))
		b.submit("#lists-form")
		b.waitJS(`document.querySelector("#lists-form .error").textContent !== ""`, 20*time.Second)
		noXSS(b, "filters page")
		b.run(chromedp.Evaluate[chromedp.Void](`document.getElementById("lists-entry").value = ""; document.querySelector("#lists-form .error").textContent = ""`))
		// Greylisting on with a 2-minute delay; the form shows what was stored.
		b.run(chromedp.Evaluate[chromedp.Void](`document.getElementById("grey-enabled").checked = true`),
			chromedp.SetValue(chromedp.ID("grey-delay"), "120"))
		b.submit("#greylist-form")
		b.waitJS(`document.querySelector("#greylist-form .error").textContent === ""`, 10*time.Second)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if out := s.mustCLI("filter", "greylist", "show"); strings.Contains(out, "on for all domains") || time.Now().After(deadline) {
				if !strings.Contains(out, "on for all domains") || !strings.Contains(out, "2m") && !strings.Contains(out, "120") {
					t.Errorf("greylisting not stored: %s", out)
				}
				break
			}
		}
		// And off again (the quarantine subtest sends mail).
		// The form reloads its values after the previous save; submit again
		// every few seconds in case that reload undid the click.
		lastSubmit := time.Time{}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if time.Since(lastSubmit) > 3*time.Second {
				b.run(chromedp.Evaluate[chromedp.Void](`document.getElementById("grey-enabled").checked = false`))
				b.submit("#greylist-form")
				lastSubmit = time.Now()
			}
			out := s.mustCLI("filter", "greylist", "show")
			if !strings.Contains(out, "on for all domains") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("greylisting not turned off: %s", out)
			}
		}
		// A DNSBL zone, and a bad one refused with the server's reason.
		b.run(chromedp.SetValue(chromedp.ID("dnsbl-zone"), "bl.example.org"), chromedp.SetValue(chromedp.ID("dnsbl-score"), "2.5"))
		b.submit("#dnsbl-form")
		b.waitJS(`document.querySelector("#dnsbl tbody").textContent.includes("bl.example.org")`, 20*time.Second)
		b.run(chromedp.SetValue(chromedp.ID("dnsbl-zone"), "bad zone!"))
		b.submit("#dnsbl-form")
		b.waitJS(`document.querySelector("#dnsbl-form .error").textContent.includes("not allowed")`, 20*time.Second)
		// Spam policy for one account: everything to boss is held (the
		// quarantine subtest releases it on the security page).
		b.run(chromedp.SetValue(chromedp.ID("policy-scope"), "boss@example.test"),
			chromedp.SetValue(chromedp.ID("policy-action"), "quarantine"),
			chromedp.SetValue(chromedp.ID("policy-threshold"), "-100"))
		b.submit("#policy-form")
		b.waitJS(`document.querySelector("#policies tbody").textContent.includes("u:boss@example.test")`, 20*time.Second)
		if got := b.text("#policies tbody"); !strings.Contains(got, "quarantine") || !strings.Contains(got, "-100") {
			t.Errorf("policy row: %q", got)
		}
		if out := s.mustCLI("filter", "policy", "get", "u:boss@example.test"); !strings.Contains(out, "quarantine") {
			t.Errorf("policy not stored: %s", out)
		}
		shot(b, "filters")
	})

	t.Run("quarantine", func(t *testing.T) {
		b := b.with(t)
		out := python(t, `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as c:
    c.sendmail("someone@outside.example", ["boss@example.test"], b"From: someone@outside.example\r\nTo: boss@example.test\r\nSubject: held <b>for</b> review\r\n\r\nhello\r\n")
print("sent")
`, s.port("smtp"))
		if !strings.Contains(out, "sent") {
			t.Fatal(out)
		}
		found := false
		for deadline := time.Now().Add(30 * time.Second); !found && time.Now().Before(deadline); {
			b.run(chromedp.Navigate(b.url("/security")), chromedp.WaitVisible(chromedp.ID("quarantine")))
			time.Sleep(300 * time.Millisecond)
			found = strings.Contains(b.text("#quarantine tbody"), "held <b>for</b> review")
		}
		if !found {
			t.Fatalf("held mail not listed: %q %q (quarantine list: %s)", b.text("#quarantine tbody"), b.text("#quarantine-status"), s.mustCLI("quarantine", "list"))
		}
		b.run(chromedp.Click(chromedp.CSS("#quarantine tbody button.btn-quiet")))
		b.waitJS(`document.querySelector("#quarantine tbody").rows.length === 0`, 20*time.Second)
		if out := s.mustCLI("quarantine", "list"); strings.Contains(out, "boss@") {
			t.Errorf("still held after release: %s", out)
		}
	})

	t.Run("domain-settings", func(t *testing.T) {
		b := b.with(t)
		// The node makes the domain's first DKIM keys in the background
		// after it starts: reload until they are listed.
		for deadline := time.Now().Add(30 * time.Second); ; {
			b.run(chromedp.Navigate(b.url("/domains")), chromedp.WaitVisible(chromedp.ID("gateway-form")))
			time.Sleep(300 * time.Millisecond)
			if evalJS[int](b, `document.querySelector("#domain-dkim tbody").rows.length`) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no DKIM keys listed: %q", b.text("#domain-detail-status"))
			}
		}
		before := evalJS[int](b, `document.querySelector("#domain-dkim tbody").rows.length`)
		b.run(chromedp.Click(chromedp.ID("dkim-rotate")))
		b.waitJS(fmt.Sprintf(`document.querySelector("#domain-dkim tbody").rows.length > %d`, before), 20*time.Second)
		if !strings.Contains(b.text("#domain-dkim tbody"), "published") {
			t.Errorf("rotated keys not shown as published: %q", b.text("#domain-dkim tbody"))
		}
		// Gateway mode: a bad backend is refused with the server's message,
		// a good one is stored.
		b.run(chromedp.SetValue(chromedp.ID("gw-backends"), "not a host"))
		b.submit("#gateway-form")
		b.waitJS(`document.querySelector("#gateway-form .error").textContent !== ""`, 20*time.Second)
		b.run(chromedp.SetValue(chromedp.ID("gw-backends"), "127.0.0.1:2525"), chromedp.SetValue(chromedp.ID("gw-verify"), "none"))
		b.submit("#gateway-form")
		b.waitJS(`document.querySelector("#gateway-form .error").textContent === "" && document.getElementById("domain-detail-status").className === "ok"`, 20*time.Second)
		if out := s.mustCLI("domain", "gateway", "example.test"); !strings.Contains(out, "127.0.0.1:2525") {
			t.Errorf("gateway not stored: %s", out)
		}
	})

	t.Run("phone", func(t *testing.T) {
		b := b.with(t)
		b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		defer b.run(chromedp.EmulateViewport(1100, 900))
		pages := []string{"/", "/domains", "/accounts", "/aliases", "/queue", "/log", "/security", "/status/cluster",
			"/dns", "/filters", "/tools", "/system"}
		for _, p := range pages {
			b.run(chromedp.Navigate(b.url(p)), chromedp.WaitVisible(chromedp.ID("main")))
			time.Sleep(300 * time.Millisecond) // the tables fill from the API
			sw := evalJS[int](b, `document.documentElement.scrollWidth`)
			iw := evalJS[int](b, `window.innerWidth`)
			if sw > iw || iw > 390 {
				wide := evalJS[string](b, `Array.from(document.querySelectorAll("main *")).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".table-wrap")).slice(0, 3).map(e => e.tagName + "#" + e.id + "." + e.className).join(", ")`)
				t.Errorf("%s: page %d px wide in a %d px viewport (too wide: %s)", p, sw, iw, wide)
			}
			if p == "/" {
				// The check itself sees an overflowing element.
				if evalJS[int](b, `(() => { const d = document.createElement("div"); d.style.width = "1000px"; d.style.height = "1px";
					document.querySelector("main").appendChild(d); const w = document.documentElement.scrollWidth; d.remove(); return w; })()`) <= 390 {
					t.Error("phone: an overflowing element went unnoticed")
				}
				if evalJS[bool](b, `getComputedStyle(document.querySelector("nav")).display !== "none"`) {
					t.Error("phone: navigation not collapsed behind the menu button")
				}
				shot(b, "phone-dashboard")
				// The menu opens and its links wrap inside the screen.
				b.run(chromedp.Click(chromedp.CSS(".navbtn")))
				if evalJS[bool](b, `getComputedStyle(document.querySelector("nav")).display === "none"`) {
					t.Error("phone: menu button does not open the navigation")
				}
				if sw := evalJS[int](b, `document.documentElement.scrollWidth`); sw > iw {
					t.Errorf("phone: open menu %d px wide", sw)
				}
			}
			if p == "/dns" {
				b.waitJS(`document.querySelector("#dns-records tbody").rows.length > 0`, 20*time.Second)
				if sw := evalJS[int](b, `document.documentElement.scrollWidth`); sw > iw {
					t.Errorf("phone /dns with records: %d px wide", sw)
				}
				shot(b, "phone-dns")
			}
		}
	})
}
