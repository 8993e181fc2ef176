"""Open TensorBoard in a real browser (headless Chromium, driven by Playwright) and check what a researcher opens
it for: the loss curves, the figures, the HParams table of a sweep and the Projector's latent codes.

    make browser-check                    # trains a small run and a 3-job sweep, evaluates, then checks
    python tools/browser_check.py --logdir logs --out docs/dashboards      # check (and screenshot) existing logs

Needs Debian's Chromium (``apt-get install chromium``) and ``playwright`` (in the ``dev`` extra); Playwright's own
browser download is not used. TensorBoard listens on 127.0.0.1 on a free port and is stopped at the end. Exits 1
naming every check that failed; the screenshots are written either way.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from vaelab.loggers.tensorboard import HPARAM_METRICS

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# <img> elements that finished loading, shadow roots included (TensorBoard's plugins are Polymer components).
LOADED_IMAGES = """() => { let count = 0; const walk = (node) => {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.children || []) {
      if (child.tagName === 'IMG' && child.naturalWidth > 100) count++; walk(child); }
  }; walk(document); return count; }"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*command: str) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def make_logs(logs: Path) -> None:
    """A small run (3 short epochs), its evaluation and a 3-job sweep of the dense model's learning rate (each job
    tested, so each has the three final metrics), in ``logs``."""
    short = ["trainer.limit_train_batches=20", "trainer.limit_val_batches=5", "print_config=false"]
    run("train.py", "trainer.max_epochs=3", *short, f"paths.log_dir={logs}")
    (best,) = sorted(logs.glob("train/runs/*/checkpoints/best-*.ckpt"))[-1:]
    run("evaluate.py", f"ckpt_path={best}", "iwae_samples=10", f"paths.log_dir={logs}")
    run("train.py", "-m", "model=vae", "model.optimizer.lr=3e-4,1e-3,3e-3", "trainer.max_epochs=2", *short,
        f"paths.log_dir={logs}")  # fmt: skip


def coloured_pixels(png: Path) -> int:
    """Pixels of a screenshot that are clearly coloured (the Projector's digit colours), not grey or white."""
    image = Image.open(png).convert("RGB")
    return sum(1 for r, g, b in image.get_flattened_data() if max(r, g, b) - min(r, g, b) > 60)


class Check:
    def __init__(self, page, base: str, out: Path) -> None:  # noqa: ANN001 (playwright's Page)
        self.page, self.base, self.out, self.failures = page, base, out, []

    def expect(self, condition: bool, what: str) -> None:
        print(("ok    " if condition else "FAIL  ") + what, flush=True)
        if not condition:
            self.failures.append(what)

    def open(self, view: str, wait: float = 8) -> None:
        self.page.goto(f"{self.base}/#{view}")
        time.sleep(wait)

    def shows(self, text: str, exact: bool = False) -> bool:
        """Whether any frame of the page shows ``text`` (Playwright's text selectors see into shadow roots);
        ``exact``: an element whose whole text it is, else any text that contains it."""
        selector = f'text="{text}"' if exact else f"text={text}"
        return any(frame.locator(selector).count() for frame in self.page.frames)

    def loaded_images(self) -> int:
        return sum(frame.evaluate(LOADED_IMAGES) for frame in self.page.frames)

    def shot(self, name: str) -> Path:
        path = self.out / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


def check_dashboards(logdir: Path, out: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"],  # WebGL, as root
            )
            page = browser.new_page(viewport={"width": 1900, "height": 1000})  # the HParams table to its last metric
            check = Check(page, f"http://127.0.0.1:{port}", out)
            time.sleep(5)  # TensorBoard reads the event files

            check.open("custom_scalars")
            check.shot("scalars")
            for chart in ("loss", "reconstruction", "KL", "negative ELBO"):
                check.expect(check.shows(chart), f"Custom Scalars: chart '{chart}'")
            check.open("timeseries")
            check.expect(check.shows("val/loss") and check.shows("train/loss"), "Time Series: train/loss and val/loss")

            check.open("images&tagFilter=latent_scatter%7Csamples")  # the dashboard's own tag filter, from the URL
            check.shot("images")
            check.expect(check.shows("figures/latent_scatter") and check.shows("figures/samples"), "Images: figures")
            check.expect(check.loaded_images() > 0, "Images: images loaded")

            check.open("hparams", wait=10)
            check.shot("hparams")
            for metric in HPARAM_METRICS.values():
                check.expect(check.shows(metric), f"HParams: final metric {metric} as a column")
            check.expect(not check.shows("NaN", exact=True), "HParams: no NaN in the table")
            for key in ("model.optimizer.lr", "data.batch_size", "model.beta"):
                check.expect(check.shows(key), f"HParams: swept key {key} as a column")
            check.expect(not check.shows("callbacks"), "HParams: no callback keys")

            check.open("projector", wait=15)
            check.shot("projector")
            check.expect(check.shows("Points:") and not check.shows("NaN%"), "Projector: PCA of the codes (not NaN%)")
            projector = next(frame for frame in page.frames if frame.locator(".state-radio").count())
            projector.locator(".state-radio paper-icon-button").first.click()  # the "z axes" bookmark
            time.sleep(4)
            coloured = coloured_pixels(check.shot("projector_z_axes"))
            check.expect(coloured > 2000, f"Projector: points drawn by the z axes ({coloured} coloured pixels)")
            browser.close()
            return check.failures
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", type=Path, help="existing logs to check (default: make small ones in --out)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "browser_check", help="screenshots (and logs)")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        print(f"error: {CHROMIUM} not found: apt-get install chromium", file=sys.stderr)
        return 1
    logdir = args.logdir
    if logdir is None:
        logdir = args.out / "logs"
        make_logs(logdir)
    failures = check_dashboards(logdir, args.out)
    print(f"Screenshots: {args.out}")
    if failures:
        print(f"error: {len(failures)} dashboard checks failed: {'; '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
