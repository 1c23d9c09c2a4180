"""Screenshots of the console's four views for the README, taken in the system's headless Chromium.

    ./run demo --console          # in one terminal: the demonstration, then the console
    .venv/bin/python docs/console/take_screenshots.py [http://127.0.0.1:8086/]
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from govbus.producers.generate import generate

HERE = Path(__file__).parent


def main(address: str) -> None:
    # The demo publishes these people (seed 7); the third is the one its audit step traces.
    entity = list(generate("population", 300, seed=7, invalid_share=0.03, department="public_security"))[2]["citizen_id"]
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for view in ("lineage", "freshness", "attention", "trace"):
            page.goto(f"{address}#{view}")
            page.wait_for_function(f"() => JSON.parse(document.body.dataset.drawn || '{{}}')['{view}'] !== undefined")
            if view == "trace":
                page.fill("#trace-form input[name=entity]", entity)
                page.click("#trace-form button[type=submit]")
                page.wait_for_selector("#trace-table tbody tr[data-subscription]")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(HERE / f"console-{view}.png"), full_page=True)
            if view == "lineage":  # "who receives population.household_address?": one click on the field
                page.click("#lineage-table tr[data-field='population.household_address'] td.field a")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(HERE / "console-lineage-field.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8086/")
