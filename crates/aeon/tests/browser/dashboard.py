"""Drives the agent's dashboard in real headless Chromium (Playwright with the system browser).

Called by crates/aeon/tests/dashboard.rs with, in the environment: AEON_URL (the agent), AEON_TOKEN,
AEON_REPO_PASSWORD, AEON_POINT (the id of the point the test just made), AEON_TARGET (where to
restore), AEON_SCREENSHOTS (a folder for PNGs). Prints one JSON object with what it saw; any
failed expectation raises (non-zero exit).
"""

import json
import os
import sys

from playwright.sync_api import expect, sync_playwright

URL = os.environ["AEON_URL"]
TOKEN = os.environ["AEON_TOKEN"]
PASSWORD = os.environ["AEON_REPO_PASSWORD"]
POINT = os.environ["AEON_POINT"]
TARGET = os.environ["AEON_TARGET"]
SHOTS = os.environ["AEON_SCREENSHOTS"]
TIMEOUT = 60_000

# As RECIPES.md 8: the system browser, and no background connections (the network is closed).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


PAGES = []


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def main():
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 860})
        page = context.new_page()
        PAGES.append(page)
        page.set_default_timeout(TIMEOUT)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # 401 (before login, a wrong secret) and 403 (the CSRF probe below) are expected.
        expected = ("status of 401", "status of 403")
        page.on("console", lambda m: errors.append(m.text)
                if m.type == "error" and not any(x in m.text for x in expected) else None)

        # Logged out: the login form. A wrong secret is refused with a message.
        page.goto(URL)
        expect(page.locator("#login")).to_be_visible()
        page.fill("#secret", "not the token")
        page.click("#login-button")
        expect(page.locator("#login-error")).to_contain_text("neither the agent's token")
        shot(page, "login")

        # The token opens everything: the overview shows the repository, healthy, and the jobs.
        page.fill("#secret", TOKEN)
        page.click("#login-button")
        expect(page.locator("#app")).to_be_visible()
        card = page.locator("#repositories .card").first
        expect(card).to_contain_text("healthy")
        expect(card).to_contain_text("Recovery points")
        expect(page.locator("#jobs tbody tr").first).to_contain_text("home:backup")
        seen["overview"] = card.inner_text()
        shot(page, "overview")

        # The recovery points: the one the test just made, by host and time.
        page.click("nav a[data-view=points]")
        row = page.locator(f"#points tbody tr[data-id='{POINT}']")
        expect(row).to_be_visible()
        expect(row).to_contain_text("complete")
        expect(page.locator("#timeline svg circle")).to_have_count(page.locator("#points tbody tr").count())
        seen["point_row"] = row.inner_text()
        shot(page, "points")

        # A POST without the session's CSRF token is refused, even from the page itself.
        status = page.evaluate("""async () => (await fetch('/api/restores', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({repository: 'x', point: 'x', target: '/tmp/x'})})).status""")
        assert status == 403, f"a POST without the CSRF token answered {status}"
        seen["csrf_refused"] = status

        # Restore it from its row: the form is filled in with the point; browse into a folder.
        row.locator("button", has_text="Restore").click()
        expect(page.locator("#view-restore")).to_be_visible()
        expect(page.locator("#restore-point")).to_have_value(POINT)
        expect(page.locator("#browser li").first).to_be_visible()
        seen["browser"] = page.locator("#browser").inner_text()
        page.locator("#browser button.dir").first.click()
        expect(page.locator("#restore-path")).not_to_have_value("/")
        seen["browsed_into"] = page.locator("#restore-path").input_value()
        page.fill("#restore-path", "/")
        page.fill("#restore-target", TARGET)
        page.click("#restore-button")
        card = page.locator("#restores .restore").first
        expect(card).to_have_attribute("data-state", "finished", timeout=TIMEOUT)
        seen["restore"] = card.inner_text()
        shot(page, "restore")

        # The audit trail records the restore the dashboard just ran.
        page.click("nav a[data-view=audit]")
        expect(page.locator("#audit tbody tr").first).to_contain_text("restore")
        expect(page.locator("#audit-state")).to_contain_text("chain intact")
        seen["audit_first"] = page.locator("#audit tbody tr").first.inner_text()
        shot(page, "audit")

        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()

        # The repository password opens a session too, on the repositories it opens.
        other = browser.new_context()
        page2 = other.new_page()
        page2.set_default_timeout(TIMEOUT)
        page2.goto(URL)
        page2.fill("#secret", PASSWORD)
        page2.click("#login-button")
        expect(page2.locator("#repositories .card").first).to_contain_text("healthy")
        seen["password_login"] = True
        # ...but such a session restores only beneath --restore-under (not given here).
        page2.click("nav a[data-view=restore]")
        expect(page2.locator("#restore-point")).to_have_value(POINT)
        page2.fill("#restore-target", TARGET + "-by-password")
        page2.click("#restore-button")
        expect(page2.locator("#restore-error")).to_contain_text("--restore-under")
        seen["password_restore_refused"] = True
        browser.close()
        assert not errors, f"errors in the page: {errors}"
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the Rust test's assertion message
        print(f"dashboard test failed: {e}", file=sys.stderr)
        for page in PAGES:
            try:  # what the page showed, to tell why
                for box in ["#login-error", "#restore-error", "#audit-state", "#unreadable", "#restores"]:
                    print(f"{box}: {page.locator(box).inner_text(timeout=1000)!r}", file=sys.stderr)
            except Exception:
                pass
        raise
