/**
 * One end-to-end login in a real browser: Debian's Chromium, headless, driven by playwright-core
 * (tests/browser/chromium.mjs), signs in at the mock issuer's sign-in page through the tool's real
 * callback server, with login.ts running as its own process exactly as a person runs it.
 *
 * Needs /usr/bin/chromium and tests/browser/node_modules, which tests/browser/prepare.sh installs
 * (.ci/prepare runs it); without them the test is skipped with the reason printed once, or fails
 * with it where `CI` is set (tests/_optional.ts).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { PUBLIC_CLIENT, s256, serveMockIssuer } from "./mock_issuer.ts";
import { inCI, optionalTest } from "./_optional.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BROWSER_DIR = fileURLToPath(new URL("./browser/", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
/**
 * The `$BROWSER` the tool is given. login.ts splits it on whitespace, so it is relative to the
 * tool's working directory (the repository root): a checkout in a folder with a space still works.
 */
const BROWSER_COMMAND = "node tests/browser/chromium.mjs";
/** How long Chromium stays open, with its sockets, after it got the tool's page. */
const HOLD_MS = 5_000;
/**
 * The tool must be gone this soon after the browser got its page. A hang detector, not a speed
 * test: a callback server that waited for Chromium's idle keep-alive or pre-connected sockets would
 * sit there until the browser closed them (HOLD_MS here; minutes for a person's browser). The
 * bound is generous so a slow CI machine never trips it: login.ts bounds its own shutdown
 * (SHUTDOWN_GRACE_MS, 1 s), and here it takes about 0.1 s, as Deno.serve closes idle keep-alive
 * sockets at once when it shuts down, and the connection guard in front of it the pre-connected ones.
 */
const EXIT_BOUND_MS = 3_000;
/** Any one wait in this test (Chromium's start, the sign-in, the tool's exit) gives up after this. */
const STEP_MS = 60_000;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function onPath(program: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => dir !== "" && exists(join(dir, program)));
}

/** Why the test cannot run here, or undefined when it can. */
function skipReason(): string | undefined {
  try {
    if (Deno.build.os !== "linux") return `it needs Debian's Chromium on Linux (this is ${Deno.build.os})`;
    if (!exists(CHROMIUM)) return `${CHROMIUM} is missing (tests/browser/prepare.sh installs Debian's chromium)`;
    if (!exists(join(BROWSER_DIR, "node_modules", "playwright-core", "package.json"))) {
      return "tests/browser/node_modules is missing (tests/browser/prepare.sh runs npm ci there)";
    }
    if (!onPath("node")) return "node is not on PATH";
  } catch (error) {
    return `cannot look for the browser: ${error}`;
  }
  return undefined;
}

const SKIP = skipReason();
if (SKIP) {
  console.log(`tests/browser_test.ts: the real-browser test ${inCI() ? "fails (CI is set)" : "is skipped"}: ${SKIP}`);
}

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────────

/** What the driver reports, one JSON object a line (see tests/browser/chromium.mjs). */
interface DriverEvent {
  event: string;
  message?: string;
  [key: string]: unknown;
}

interface Success extends DriverEvent {
  receivedAt: number;
  status: number;
  url: string;
  title: string;
  text: string;
  headers: Record<string, string>;
  navigations: string[];
  console: string[];
  bodyMaxWidth: string;
}

interface Closed extends DriverEvent {
  closingAt: number;
  closedAt: number;
  /** Chromium's connections to the callback server by TCP state, each time they changed. */
  sockets: { at: number; counts: Record<string, number> }[];
  /** The tool's ends of those connections by TCP state, when Chromium was about to close. */
  serverEnds: Record<string, number>;
  console: string[];
}

/** Reads the driver's events as they come; `next(kind)` waits for one, and fails on an error. */
function driverEvents(stream: ReadableStream<Uint8Array>) {
  const waiting = new Map<string, PromiseWithResolvers<DriverEvent>>();
  const log: string[] = [];
  let failure: Error | undefined;
  const slot = (kind: string) => {
    let entry = waiting.get(kind);
    if (!entry) {
      entry = Promise.withResolvers<DriverEvent>();
      entry.promise.catch(() => {});
      if (failure) entry.reject(failure);
      waiting.set(kind, entry);
    }
    return entry;
  };
  const fail = (error: Error) => {
    failure ??= error;
    for (const entry of waiting.values()) entry.reject(failure);
  };
  const take = (line: string) => {
    if (!line.trim()) return;
    log.push(line);
    let event: DriverEvent;
    try {
      event = JSON.parse(line);
    } catch {
      return; // not ours: keep it in the log only
    }
    if (event.event === "error") fail(new Error(`the browser driver failed: ${event.message}`));
    else slot(event.event).resolve(event);
  };
  const done = (async () => {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
        take(buffer.slice(0, end));
        buffer = buffer.slice(end + 1);
      }
    }
    take(buffer);
    fail(new Error("the browser driver exited before it reported this"));
  })();
  return { next: <T extends DriverEvent>(kind: string) => slot(kind).promise as Promise<T>, done, log };
}

/** `promise`, or an error naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms)
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Ends a child process (if it still runs) and waits for it, with SIGKILL as the last resort. */
async function stop(child: Deno.ChildProcess, exited: { value: boolean }): Promise<void> {
  if (!exited.value) {
    try {
      child.kill("SIGTERM");
    } catch { /* it ended meanwhile */ }
    try {
      await within(child.status, 10_000, "SIGTERM");
    } catch {
      try {
        child.kill("SIGKILL");
      } catch { /* it ended meanwhile */ }
    }
  }
  await child.status;
}

async function assertPortClosed(port: number): Promise<void> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    throw new Error(`the callback port ${port} still accepts connections after the tool exited`);
  } catch (error) {
    assert(error instanceof Deno.errors.ConnectionRefused, String(error));
  }
}

// ── The test ────────────────────────────────────────────────────────────────────────────────────

Deno.test(optionalTest({
  name: "Chromium signs in through the real callback server, and the tool exits without waiting for its sockets",
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "oauth-login-browser-" });
    const handoff = join(tmp, "url");
    const mock = serveMockIssuer({ autoApprove: false });
    const children: { child: Deno.ChildProcess; exited: { value: boolean } }[] = [];
    const spawn = (command: Deno.Command) => {
      const child = command.spawn();
      const exited = { value: false };
      child.status.finally(() => exited.value = true);
      children.push({ child, exited });
      return child;
    };
    const reads: Promise<unknown>[] = [];
    const text = (stream: ReadableStream<Uint8Array>) => {
      const read = new Response(stream).text();
      reads.push(read);
      return read;
    };

    try {
      // The driver: started and owned by this test, it launches Chromium and waits for the URL.
      const driver = spawn(
        new Deno.Command("node", {
          args: ["chromium.mjs", "--drive"],
          cwd: BROWSER_DIR,
          env: { BROWSER_TEST_HANDOFF: handoff, BROWSER_TEST_HOLD_MS: String(HOLD_MS), BROWSER_TEST_TMP: tmp },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }),
      );
      const events = driverEvents(driver.stdout);
      reads.push(events.done);
      const driverStderr = text(driver.stderr);
      const context = async () => `\ndriver stdout:\n${events.log.join("\n")}\ndriver stderr:\n${await driverStderr}`;

      try {
        await within(events.next("ready"), STEP_MS, "Chromium did not start");
      } catch (error) {
        await stop(driver, children[0].exited);
        throw new Error(`${(error as Error).message}${await context()}`);
      }

      // The tool, run as a person runs it; `$BROWSER` only hands the URL over to the driver.
      const tool = spawn(
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-net",
            "--allow-env",
            "--allow-read",
            "--allow-write",
            "--allow-run",
            "login.ts",
            "--issuer",
            mock.issuer,
            "--client-id",
            PUBLIC_CLIENT.id,
            "--timeout", // a failed run ends by itself rather than holding the test for 5 minutes
            "60",
          ],
          cwd: ROOT,
          env: {
            BROWSER: BROWSER_COMMAND,
            BROWSER_TEST_HANDOFF: handoff,
            OAUTH_LOGIN_CACHE: join(tmp, "cache"),
            OAUTH_TOKEN_STORAGE: "file", // never the keychain of the machine running the tests
            NO_COLOR: "1",
          },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }),
      );
      const toolExit = tool.status.then((status) => ({ status, at: Date.now() }));
      const toolStdout = text(tool.stdout);
      const toolStderr = text(tool.stderr);

      let success: Success;
      try {
        success = await within(events.next<Success>("success"), STEP_MS, "the sign-in in Chromium did not finish");
      } catch (error) {
        await stop(tool, children[1].exited);
        throw new Error(`${(error as Error).message}\ntool stderr:\n${await toolStderr}${await context()}`);
      }
      const port = Number(new URL(success.url).port);

      // The hang detector: the tool must exit while Chromium still holds its connections.
      let exit: Awaited<typeof toolExit>;
      try {
        exit = await within(toolExit, STEP_MS, "the tool did not exit after the browser got its page");
      } catch (error) {
        throw new Error(`${(error as Error).message}${await context()}`);
      }
      const exitDelay = Math.round(exit.at - success.receivedAt);
      await assertPortClosed(port);
      const closed = await within(events.next<Closed>("closed"), STEP_MS, "Chromium did not close");
      const stderr = await toolStderr;
      const timeline = closed.sockets.map(({ at, counts }) => `${at - exit.at} ms: ${JSON.stringify(counts)}`);
      console.log(
        `The tool exited ${exitDelay} ms after Chromium got the success page (bound ${EXIT_BOUND_MS} ms), ` +
          `${closed.closingAt - exit.at} ms before Chromium closed.\nChromium's connections to the callback ` +
          `server, by time relative to the tool's exit:\n  ${timeline.join("\n  ")}\n` +
          `The tool's ends of them when Chromium closed: ${JSON.stringify(closed.serverEnds)}`,
      );

      // The tool's own verdict.
      assertEquals(exit.status.code, 0, stderr);
      assertStringIncludes(stderr, "Logged in as alice@example.com\n");
      assertEquals(await toolStdout, "");

      // The point of this test: a prompt exit, while Chromium was still open and still held
      // connections (kept alive by Deno.serve, or pre-connected) that the tool had to close.
      const toolClosedFirst = (closed.serverEnds.TIME_WAIT ?? 0) + (closed.serverEnds.FIN_WAIT2 ?? 0);
      const sawCloseWait = closed.sockets.some(({ counts }) => (counts.CLOSE_WAIT ?? 0) > 0);
      assert(
        toolClosedFirst > 0 || sawCloseWait,
        "Chromium never held a connection that the tool had to close, so this run did not test the shutdown " +
          `with open sockets: ${JSON.stringify(closed)}`,
      );
      assert(exit.at < closed.closingAt, "the tool exited only after Chromium closed");
      assert(
        exitDelay < EXIT_BOUND_MS,
        `the tool took ${exitDelay} ms to exit after the browser got its page (bound ${EXIT_BOUND_MS} ms): ` +
          "it hung on shutdown, as when a callback server waits for the browser's connections",
      );

      // The page the browser ended on: the tool's success page, with its headers.
      assertEquals(success.status, 200);
      assertMatch(success.url, new RegExp(`^http://127\\.0\\.0\\.1:${port}/callback\\?`));
      assertEquals(success.title, "Signed in");
      assertStringIncludes(success.text, "Signed in as alice@example.com");
      assertEquals(success.headers["content-type"], "text/html; charset=utf-8");
      assertEquals(success.headers["cache-control"], "no-store");
      assertEquals(success.headers["referrer-policy"], "no-referrer");
      assertEquals(success.headers["x-content-type-options"], "nosniff");
      assertEquals(success.headers["x-frame-options"], "DENY");
      const csp = success.headers["content-security-policy"] ?? "";
      for (
        const directive of ["default-src 'none'", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"]
      ) {
        assertStringIncludes(csp, directive);
      }
      // The CSP lets the page's own inline style apply (max-width: 36em), and Chromium reports no violation.
      assertEquals(success.bodyMaxWidth, "576px");
      const violations = closed.console.filter((line) => /content security policy/i.test(line));
      assertEquals(violations, [], "Chromium reported CSP violations");

      // The way there: the short loopback address, the mock's sign-in page, Approve, the callback.
      const issuer = mock.issuer.replaceAll(".", "\\.");
      const navigations = success.navigations;
      assertEquals(navigations.length, 4, navigations.join("\n"));
      // The start address: a random path of 16 base64url characters (the harness's START_PATH).
      assertMatch(navigations[0], new RegExp(`^GET http://127\\.0\\.0\\.1:${port}/[A-Za-z0-9_-]{16}$`));
      assertMatch(navigations[1], new RegExp(`^GET ${issuer}/authorize\\?`));
      assertEquals(navigations[2], `POST ${mock.issuer}/authorize/decision`);
      assertMatch(navigations[3], new RegExp(`^GET http://127\\.0\\.0\\.1:${port}/callback\\?`));

      // PKCE: what the tool sent to the token endpoint proves it holds the verifier of the challenge
      // that Chromium carried to the authorization endpoint.
      // The tool asked once itself (the preflight check of the request, issue 13), then Chromium did.
      const [preflight] = mock.preflights();
      assert(!/Chrome\//.test(preflight.headers["user-agent"] ?? ""), "the first request is the tool's own check");
      const authorize = mock.calls("authorize");
      const token = mock.calls("token");
      assertEquals(authorize.length, 1);
      assertEquals(token.length, 1);
      assertMatch(authorize[0].headers["user-agent"] ?? "", /Chrome\//, "the authorization request came from Chromium");
      assertEquals(authorize[0].query.code_challenge_method, "S256");
      assertEquals(await s256(token[0].form.code_verifier ?? ""), authorize[0].query.code_challenge);
      assertEquals(token[0].form.redirect_uri, authorize[0].query.redirect_uri);
    } finally {
      for (const { child, exited } of children.toReversed()) await stop(child, exited);
      await Promise.allSettled(reads);
      await mock.close();
      await Deno.remove(tmp, { recursive: true });
    }
  },
}, SKIP));

// ── Screenshots of the pages a person sees (issue 13) ──────────────────────────────────────────

/**
 * The demo's sign-in page, the success page and the error page, as Chromium renders them, saved as
 * PNGs in a folder that is kept (its path is printed) so a person can look at them side by side.
 */
Deno.test(optionalTest({
  name: "screenshots: the demo's sign-in page, the success page and the error page, in Chromium",
  async fn() {
    const { run } = await import("./_harness.ts");
    const shots = await Deno.makeTempDir({ prefix: "oauth-login-screenshots-" });
    for (const decision of ["approve", "deny"] as const) {
      const tmp = await Deno.makeTempDir({ prefix: "oauth-login-browser-" });
      const handoff = join(tmp, "url");
      const mock = serveMockIssuer({
        autoApprove: false,
        user: { sub: "demo-1", username: "demo-user", email: "demo-user@example.com", name: "Demo User" },
      });
      mock.clients.push({
        id: "demo",
        name: "the demo app",
        auth: "none",
        redirectUris: ["http://127.0.0.1/callback"],
      });
      const driver = new Deno.Command("node", {
        args: ["chromium.mjs", "--drive"],
        cwd: BROWSER_DIR,
        env: {
          BROWSER_TEST_HANDOFF: handoff,
          BROWSER_TEST_HOLD_MS: "0",
          BROWSER_TEST_TMP: tmp,
          BROWSER_TEST_DECISION: decision,
          BROWSER_TEST_SCREENSHOTS: shots,
          BROWSER_TEST_SHOT_PREFIX: `${decision}-`,
        },
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const exited = { value: false };
      driver.status.finally(() => exited.value = true);
      const events = driverEvents(driver.stdout);
      try {
        await within(events.next("ready"), STEP_MS, "Chromium did not start");
        const result = await run(["--issuer", mock.issuer, "--client-id", "demo", "--flow", "browser"], {
          boundMs: STEP_MS,
          openUrl: async (url) => {
            await Deno.writeTextFile(`${handoff}.tmp`, url);
            await Deno.rename(`${handoff}.tmp`, handoff);
          },
        });
        const answer = await within(events.next<Success>("success"), STEP_MS, "Chromium got no answer");
        await within(events.next("closed"), STEP_MS, "Chromium did not close");
        if (decision === "approve") {
          assertEquals(result.code, 0, result.stderr);
          assertStringIncludes(answer.text, "Signed in as demo-user");
          assertStringIncludes(answer.text, `Provider: 127.0.0.1:${mock.port}`);
        } else {
          assertEquals(result.code, 3, result.stderr);
          assertEquals(answer.title, "Sign-in cancelled");
          assertStringIncludes(answer.text, "Next: run the login again and approve the request in the browser.");
          assertStringIncludes(result.stderr, "hint: run the login again and approve the request in the browser\n");
        }
        await Deno.remove(result.home, { recursive: true });
      } finally {
        await stop(driver, exited);
        await events.done.catch(() => {});
        await mock.close();
        await Deno.remove(tmp, { recursive: true });
      }
    }
    const files = [...Deno.readDirSync(shots)].map((entry) => entry.name).sort();
    assertEquals(files, ["approve-answer.png", "approve-signin.png", "deny-answer.png", "deny-signin.png"]);
    console.log(`Screenshots of the demo's sign-in page, the success page and the error page: ${shots}`);
  },
}, SKIP));
