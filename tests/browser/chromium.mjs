// The real browser for tests/browser_test.ts: Debian's Chromium (/usr/bin/chromium), headless, driven
// by playwright-core. Never a downloaded browser.
//
// Design: one script, two roles, so that the tool never waits on the browser and the test owns
// every process it starts.
//
//   node chromium.mjs --drive     The driver. The Deno test starts it (and so can await and kill
//                                 it): it launches Chromium, waits for a URL to be handed over,
//                                 signs in, reports on stdout, keeps Chromium open HOLD_MS more,
//                                 then closes it and exits.
//   node chromium.mjs URL         The hand-over: what the tool runs as `$BROWSER` (login.ts
//                                 appends the URL). It writes the URL to the file named by
//                                 $BROWSER_TEST_HANDOFF (atomically: a temporary file, then a
//                                 rename) and exits at once, as `xdg-open` would, so the tool's
//                                 10 s wait for its opener is never in play. The driver polls
//                                 that file.
//
// A detached child started by `$BROWSER` would also return at once, but then nobody owns it: a
// failing test would leave Chromium behind. Here the test spawns the driver itself, reads its
// report from a pipe, and kills it on any failure.
//
// The driver's stdout carries one JSON object a line: {"event":"ready"}, then
// {"event":"success", ...} with what the browser ended on, then {"event":"closed", ...}; or
// {"event":"error","message":...}. Times are Date.now() milliseconds, comparable with the test's.
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import process from "node:process";

const CHROMIUM = "/usr/bin/chromium";
/** The flags that work here as root (see the machine notes): no sandbox, no GPU, no calls home. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** The most any one step may take (launch, hand-over, a page); the driver gives up after this. */
const STEP_MS = 30_000;
/** Everything, from start to exit, whatever happens. */
const OVERALL_MS = 120_000;

/** `$BROWSER URL`: pass the URL to the driver and return at once. */
function handOver(url) {
  const file = process.env.BROWSER_TEST_HANDOFF;
  if (!file) {
    process.stderr.write(
      "chromium.mjs: BROWSER_TEST_HANDOFF is not set, so there is no driver to hand the URL to\n",
    );
    process.exit(1);
  }
  writeFileSync(`${file}.tmp`, url);
  renameSync(`${file}.tmp`, file);
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for the hand-over file and returns the URL in it. */
async function waitForUrl(file) {
  const deadline = Date.now() + STEP_MS;
  while (Date.now() < deadline) {
    try {
      const url = readFileSync(file, "utf8").trim();
      if (url) return url;
    } catch (error) {
      if (error.code !== "ENOENT") throw error;
    }
    await sleep(25);
  }
  throw new Error(
    `no URL was handed over within ${STEP_MS / 1000} s (is $BROWSER set to this script?)`,
  );
}

const TCP_STATES = {
  "01": "ESTABLISHED",
  "02": "SYN_SENT",
  "03": "SYN_RECV",
  "04": "FIN_WAIT1",
  "05": "FIN_WAIT2",
  "06": "TIME_WAIT",
  "07": "CLOSE",
  "08": "CLOSE_WAIT",
  "09": "LAST_ACK",
  "0A": "LISTEN",
  "0B": "CLOSING",
};

/** The IPv4 TCP sockets between 127.0.0.1 ports, from /proc/net/tcp (Linux). */
function loopbackSockets() {
  const rows = [];
  for (
    const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)
  ) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4) continue;
    const [localIp, localPort] = fields[1].split(":");
    const [remoteIp, remotePort] = fields[2].split(":");
    if (localIp !== "0100007F" || remoteIp !== "0100007F") continue;
    rows.push({
      local: parseInt(localPort, 16),
      remote: parseInt(remotePort, 16),
      state: TCP_STATES[fields[3]] ?? fields[3],
    });
  }
  return rows;
}

function countStates(rows) {
  const counts = {};
  for (const { state } of rows) counts[state] = (counts[state] ?? 0) + 1;
  return counts;
}

/**
 * Watches Chromium's connections to the tool's callback server at 127.0.0.1:port, so the test can
 * tell that the browser still held connections when the tool shut down; otherwise the hang
 * detector would pass without having been put to the test.
 *
 * - `timeline`: the states of the client ends (remote port = port, so only Chromium's), each
 *   time they change. CLOSE_WAIT is a connection the tool closed while Chromium still held it.
 * - `serverEnds()`: the states of the tool's ends of those same connections. TIME_WAIT (or
 *   FIN_WAIT2) there means the tool closed first, and it stays visible for a minute, so this does
 *   not depend on sampling fast enough.
 */
function watchSockets(port) {
  const timeline = [];
  const clientPorts = new Set();
  const sample = () => {
    let rows;
    try {
      rows = loopbackSockets().filter((row) => row.remote === port);
    } catch {
      return;
    }
    for (const row of rows) clientPorts.add(row.local);
    const counts = countStates(rows);
    const last = timeline.at(-1);
    if (!last || JSON.stringify(last.counts) !== JSON.stringify(counts)) {
      timeline.push({ at: Date.now(), counts });
    }
  };
  sample();
  const timer = setInterval(sample, 2);
  return {
    timeline,
    stop: () => clearInterval(timer),
    serverEnds: () => {
      try {
        return countStates(
          loopbackSockets().filter((row) => row.local === port && clientPorts.has(row.remote)),
        );
      } catch {
        return {};
      }
    },
  };
}

async function drive() {
  const file = process.env.BROWSER_TEST_HANDOFF;
  const holdMs = Number(process.env.BROWSER_TEST_HOLD_MS ?? "5000");
  const approve = process.env.BROWSER_TEST_DECISION !== "deny";
  if (!file) {
    emit({ event: "error", message: "BROWSER_TEST_HANDOFF is not set" });
    process.exit(1);
  }
  // A fresh, empty profile every run; removed on the way out.
  const profile = mkdtempSync(
    join(process.env.BROWSER_TEST_TMP ?? tmpdir(), "chromium-profile-"),
  );
  let context;
  let page;
  let exitCode = 0;
  const finish = async (code) => {
    await context?.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    process.exit(code);
  };
  // The test kills the driver with SIGTERM when it gives up: close Chromium first, never orphan it.
  process.on("SIGTERM", () => finish(143));
  process.on("SIGINT", () => finish(130));
  setTimeout(() => {
    emit({
      event: "error",
      message: `the driver ran longer than ${OVERALL_MS / 1000} s`,
    });
    finish(1);
  }, OVERALL_MS).unref();

  try {
    const { chromium } = await import("playwright-core");
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: STEP_MS,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
    context.setDefaultTimeout(STEP_MS);
    page = context.pages()[0] ?? await context.newPage();
    const consoleMessages = [];
    page.on(
      "console",
      (message) => consoleMessages.push(`${message.type()}: ${message.text()}`),
    );
    const navigations = [];
    page.on("request", (request) => {
      if (
        request.isNavigationRequest() && request.frame() === page.mainFrame()
      ) {
        navigations.push(`${request.method()} ${request.url()}`);
      }
    });
    emit({ event: "ready", version: context.browser()?.version() ?? null });

    const start = await waitForUrl(file);
    const tool = new URL(start);
    const callback = `${tool.origin}/callback`;
    const sockets = watchSockets(Number(tool.port));
    // The tool's answer to the redirect back: the page the browser ends on.
    const answered = page.waitForResponse((response) =>
      response.url().startsWith(callback) &&
      response.request().isNavigationRequest()
    );
    answered.catch(() => {});
    // The short address 302s to the mock's sign-in page, which has Approve and Deny.
    await page.goto(start);
    // $BROWSER_TEST_SCREENSHOTS: a folder for PNGs of the sign-in page and the page the tool answers.
    const shots = process.env.BROWSER_TEST_SCREENSHOTS;
    const prefix = process.env.BROWSER_TEST_SHOT_PREFIX ?? "";
    if (shots) await page.screenshot({ path: join(shots, `${prefix}signin.png`) });
    await page.getByRole("button", { name: approve ? "Approve" : "Deny" })
      .click();
    const response = await answered;
    await response.finished();
    // When Chromium had the whole page, by its own clock (the same system clock as the test's).
    const timing = response.request().timing();
    const receivedAt = timing.startTime +
      Math.max(timing.responseEnd, timing.responseStart, 0);
    await page.waitForLoadState("load");
    if (shots) await page.screenshot({ path: join(shots, `${prefix}answer.png`) });
    emit({
      event: "success",
      receivedAt,
      status: response.status(),
      url: page.url(),
      title: await page.title(),
      text: await page.locator("body").innerText(),
      // Whether the page's inline style applied under its CSP (body{max-width:36em}).
      bodyMaxWidth: await page.evaluate(() => getComputedStyle(document.body).maxWidth),
      headers: await response.allHeaders(),
      navigations,
      console: [...consoleMessages],
    });

    // Keep Chromium and its keep-alive sockets open: the tool must exit without waiting for them.
    await sleep(holdMs);
    sockets.stop();
    const closingAt = Date.now();
    const serverEnds = sockets.serverEnds();
    await context.close();
    context = undefined;
    emit({
      event: "closed",
      closingAt,
      closedAt: Date.now(),
      sockets: sockets.timeline,
      serverEnds,
      console: consoleMessages,
    });
  } catch (error) {
    // Say where the browser got stuck: the address and text of the page it was on.
    const where = page
      ? `\nthe browser was at ${page.url()}, showing: ${await page.locator(
        "body",
      ).innerText({ timeout: 2_000 }).catch(() => "(no text)")}`
      : "";
    emit({ event: "error", message: `${error?.stack ?? error}${where}` });
    exitCode = 1;
  }
  await finish(exitCode);
}

const role = process.argv[2];
if (role === "--drive") {
  await drive();
} else if (role && !role.startsWith("-")) {
  handOver(role);
} else {
  process.stderr.write(
    "usage: node chromium.mjs --drive | node chromium.mjs URL\n",
  );
  process.exit(2);
}
