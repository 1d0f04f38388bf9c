#!/usr/bin/env python3
"""browser.py - the approval page in a real headless Chromium (Debian's
chromium, driven by Playwright; no browser is downloaded).

  browser.py BASE_URL USER PASSWORD APPROVE_ID REJECT_ID

Opens the run list, opens APPROVE_ID (waiting at the EXPLORE gate), reads
the EXPLORE output, clicks Approve and waits until the run has moved on to
the PLAN gate; then opens REJECT_ID, rejects it with a reason and waits until
it has ended as rejected. USER may be "-" for no credentials (loopback).
Prints one "ok"/"FAIL" line per check and exits 1 if any failed.
"""
import os
import sys
import time

from playwright.sync_api import sync_playwright

base, user, password, approve_id, reject_id = sys.argv[1:6]
WAIT = float(os.environ.get("WEB_WAIT", "60"))
failed = 0


def check(name, cond, detail=""):
    global failed
    if cond:
        print("ok   browser: " + name)
    else:
        failed += 1
        print("FAIL browser: " + name + (("\n     " + detail) if detail else ""))


def text(page, sel):
    loc = page.locator(sel)
    return loc.inner_text().strip() if loc.count() else ""


def wait_page(page, url, sel, want):
    """Reloads url until the text of sel contains want (or WAIT passes)."""
    deadline = time.time() + WAIT
    got = ""
    while time.time() < deadline:
        page.goto(url)
        got = text(page, sel)
        if want in got:
            return got
        time.sleep(0.3)
    return got


exe = os.environ.get("CHROMIUM", "/usr/bin/chromium")
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
    ctx = browser.new_context(http_credentials={"username": user, "password": password}) if user != "-" \
        else browser.new_context()
    page = ctx.new_page()

    # the run list
    page.goto(base + "/")
    row = page.locator('tr[data-id="%s"]' % approve_id)
    check("the run list shows " + approve_id, row.count() == 1, page.content()[:2000])
    if row.count() == 1:
        check("the list says it waits at the EXPLORE gate",
              "EXPLORE gate" in row.locator(".waiting").inner_text(), row.inner_text())
        check("the list shows its phase EXPLORE", row.locator(".phase").inner_text().strip() == "EXPLORE",
              row.inner_text())
        check("the list shows awaiting_approval", "awaiting_approval" in row.locator(".status").inner_text(),
              row.inner_text())
        row.locator("a").first.click()
        page.wait_for_load_state()
    check("the run's page opens from the list", page.url.endswith("/runs/" + approve_id), page.url)

    # the gate and what the agents produced
    check("the page says it waits for approval", "Waiting for approval after EXPLORE" in text(page, "#gate"),
          text(page, "#gate"))
    plan = text(page, "#gate-output")
    check("the EXPLORE output is shown as text (requirements agent)",
          "requirements agent" in plan and "[DEMO AGENT] requirements for " + approve_id in plan, plan[:500])
    check("the timeline lists EXPLORE as completed",
          text(page, 'tr[data-phase="EXPLORE"] .phase-status') == "completed", text(page, "#timeline"))

    # approve: the run moves on to PLAN and its gate
    page.click("#approve")
    page.wait_for_load_state()
    check("Approve answers with a confirmation", "proceed signal was sent" in text(page, "#flash"),
          page.content()[:1500])
    url = base + "/runs/" + approve_id
    got = wait_page(page, url, "#gate", "after PLAN")
    check("after Approve the run moves on to the PLAN gate", "after PLAN" in got, got)
    check("the timeline has PLAN completed", text(page, 'tr[data-phase="PLAN"] .phase-status') == "completed",
          text(page, "#timeline"))
    who = user if user != "-" else "local user"
    check("the approval records who approved", who in text(page, "#gates"), text(page, "#gates"))

    # reject with a reason: the run ends as rejected
    page.goto(base + "/runs/" + reject_id)
    check("the second run waits at the EXPLORE gate", "after EXPLORE" in text(page, "#gate"), text(page, "#gate"))
    page.fill("#reason", "not this quarter <b>really</b>")
    page.click("#reject")
    page.wait_for_load_state()
    got = wait_page(page, base + "/runs/" + reject_id, "#status", "Failed")
    check("after Reject the run ends (status Failed)", got == "Failed", got)
    check("as rejected", text(page, "#ostatus") == "rejected", text(page, "#ostatus"))
    check("the reason is shown, escaped as text", "not this quarter <b>really</b>" in text(page, "#failure"),
          text(page, "#failure"))
    check("no action buttons on a closed run", page.locator("#reject").count() == 0)
    browser.close()

sys.exit(1 if failed else 0)
