/**
 * The callback server under pressure (issue 19, section 4): a waiting login survives local
 * connections that use up its file descriptors and still completes with the genuine callback; the
 * start address (which redirects to the whole authorization request) cannot be guessed by another
 * local process; Deno.serve, which parses the HTTP, listens only on a Unix socket in a private folder
 * (behind the connection guard on the loopback port), wherever DENO_SERVE_ADDRESS points; and what
 * Deno.serve refuses never reaches the callback handler.
 *
 *     deno test --allow-net --allow-env --allow-read --allow-write --allow-run tests/callback_test.ts
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { EXIT } from "../login.ts";
import { PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import {
  assertPortClosed,
  authorizationUrl,
  cleanLoginStderr,
  cleanUp,
  filesUnder,
  freePort,
  genuineCallback,
  hit,
  portOf,
  raw,
  type RawAnswer,
  run,
  scriptedBrowser,
  START_PATH,
  within,
  withMock,
} from "./_harness.ts";

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

// ── Descriptors used up by idle local connections ───────────────────────────────────────────────

const LOGIN_TS = new URL("../login.ts", import.meta.url).pathname;

/** A login process with a small descriptor limit, and the start address it printed. */
interface LimitedLogin {
  pid: number;
  start: string;
  /** Its exit code and all of its stderr, once it ended. */
  ended: Promise<{ code: number; stderr: string }>;
}

/** What else a login process gets: variables, and Deno's permission flags (all five, when absent). */
interface ProcessOptions {
  env?: Record<string, string>;
  permissions?: string[];
}

const ALL_PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];

/**
 * `login.ts login` as its own process under `ulimit -n LIMIT` (the test runner's own limit is left
 * alone), with a `$BROWSER` that opens nothing; stderr piped.
 */
function loginCommand(mock: ServedMock, limit: number, cache: string, options: ProcessOptions = {}): Deno.Command {
  return new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n ${limit} && exec "$0" "$@"`,
      Deno.execPath(),
      "run",
      "--quiet",
      "--no-prompt",
      ...options.permissions ?? ALL_PERMISSIONS,
      LOGIN_TS,
      "login",
      ...flags(mock, "--timeout", "20"),
    ],
    env: { BROWSER: "true", OAUTH_LOGIN_CACHE: cache, NO_COLOR: "1", OAUTH_TOKEN_STORAGE: "file", ...options.env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
}

/** Starts a login process (`loginCommand`) and reads its stderr until it prints the start address. */
async function limitedLogin(
  mock: ServedMock,
  limit: number,
  cache: string,
  options: ProcessOptions = {},
): Promise<LimitedLogin> {
  const child = loginCommand(mock, limit, cache, options).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let stderr = "";
  let start: string | undefined;
  while (start === undefined) {
    const { value, done } = await reader.read();
    if (done) break;
    stderr += value;
    start = stderr.match(/If it does not open, visit: (\S+)\n/)?.[1];
  }
  const ended = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += value;
    }
    return { code: (await child.status).code, stderr };
  })();
  if (start === undefined) throw new Error(`the login printed no start address:\n${(await ended).stderr}`);
  return { pid: child.pid, start, ended };
}

for (
  const [what, greeting] of [
    ["idle connections (connected, silent)", undefined],
    ["connections that send half a request line and stop", "GET /call"],
  ] as const
) {
  Deno.test(
    `a login under "ulimit -n 64" survives 100 ${what} and completes with the genuine callback`,
    { ignore: Deno.build.os === "windows" },
    async () => {
      await withMock(async (mock) => {
        const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
        const held: Deno.Conn[] = [];
        try {
          const login = await limitedLogin(mock, 64, cache);
          const port = portOf(login.start);
          for (let i = 0; i < 100; i++) {
            try {
              const conn = await Deno.connect({ hostname: "127.0.0.1", port });
              held.push(conn);
              if (greeting) await conn.write(new TextEncoder().encode(greeting));
            } catch {
              break; // the listener is gone: the login crashed (the check below says how)
            }
          }
          const visit = await scriptedBrowser(login.start).catch((error) => error as Error);
          const { code, stderr } = await within(login.ended, 30_000, "the login process");
          assertEquals({ code, stderr }, {
            code: EXIT.ok,
            stderr: cleanLoginStderr(login.start, `127.0.0.1:${mock.port}`).replace("5 minutes", "20 seconds"),
          });
          assertEquals(held.length, 100, "every connection was taken (accepted or left in the backlog)");
          assert(!(visit instanceof Error), `the genuine browser failed: ${visit}`);
          assertEquals(visit.status, 200);
          assertStringIncludes(visit.body, "Signed in as alice@example.com");
          assertEquals(mock.calls("token").length, 1, "one code exchange");
          const files = await filesUnder(cache);
          assertEquals(files.length, 1, `one cache entry, nothing else: ${files.join(", ")}`);
          assertMatch(files[0], /^127\.0\.0\.1-[0-9a-f]{16}\.json$/);
          assertEquals((await Deno.stat(`${cache}/${files[0]}`)).mode! & 0o777, 0o600);
        } finally {
          for (const conn of held) conn.close();
          await Deno.remove(cache, { recursive: true });
        }
      });
    },
  );
}

/** How many sockets a process holds open, from /proc (Linux; through `ls`, as Deno reads /proc only with --allow-all). */
async function socketsOf(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("ls", { args: ["-l", `/proc/${pid}/fd`], stderr: "null" }).output();
  return new TextDecoder().decode(stdout).split("\n").filter((line) => line.includes("-> socket:")).length;
}

Deno.test(
  "the callback server holds at most 64 connections, whatever the descriptor limit; the rest wait unaccepted",
  { ignore: Deno.build.os !== "linux" },
  async () => {
    await withMock(async (mock) => {
      const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
      const held: Deno.Conn[] = [];
      try {
        const login = await limitedLogin(mock, 4096, cache);
        const before = await socketsOf(login.pid);
        for (let i = 0; i < 150; i++) {
          held.push(await Deno.connect({ hostname: "127.0.0.1", port: portOf(login.start) }));
        }
        // The browser's request comes after the 150 in the backlog: answered, it shows the server got past them.
        await authorizationUrl(login.start);
        const during = await socketsOf(login.pid);
        const visit = await scriptedBrowser(login.start);
        assertEquals((await within(login.ended, 30_000, "the login process")).code, EXIT.ok);
        assertEquals(visit.status, 200);
        // Three sockets a connection: the browser's, the guard's to Deno.serve and Deno.serve's end of it;
        // and one accepted connection waiting for a place.
        const sockets = during - before;
        assert(sockets <= 3 * 64 + 1, `the login held ${sockets} more sockets than before the 150 connections`);
      } finally {
        for (const conn of held) conn.close();
        await Deno.remove(cache, { recursive: true });
      }
    });
  },
);

Deno.test(
  "connections kept busy for good (endless request bodies) give their place after 10 s; the login completes",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await withMock(async (mock) => {
      const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
      const held: Deno.Conn[] = [];
      let streaming = true;
      const streams: Promise<void>[] = [];
      try {
        const login = await limitedLogin(mock, 4096, cache);
        const port = portOf(login.start);
        const head = `POST /callback HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nTransfer-Encoding: chunked\r\n\r\n`;
        const encoder = new TextEncoder();
        // Deno.serve answers 405 and then reads the body for as long as it comes: each keeps a place busy.
        for (let i = 0; i < 100; i++) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          held.push(conn);
          streams.push((async () => {
            try {
              await conn.write(encoder.encode(head));
              while (streaming) {
                await conn.write(encoder.encode(`10\r\n${"x".repeat(16)}\r\n`));
                await new Promise((resolve) => setTimeout(resolve, 100));
              }
            } catch { /* cut by the server */ }
          })());
        }
        // Each has had its answer (405) and sent more since: none is idle, all are busy.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        const started = performance.now();
        const visit = await scriptedBrowser(login.start);
        const waited = performance.now() - started;
        const { code, stderr } = await within(login.ended, 30_000, "the login process");
        assertEquals(code, EXIT.ok, stderr);
        assertEquals(visit.status, 200);
        assert(waited >= 7_000, `the browser got in after ${Math.round(waited)} ms, before any place was 10 s old`);
      } finally {
        streaming = false;
        for (const conn of held) conn.close();
        await Promise.all(streams);
        await Deno.remove(cache, { recursive: true });
      }
    });
  },
);

Deno.test("a login ends at once although clients keep their connections open after their answers", async () => {
  await withMock(async (mock) => {
    const held: Deno.Conn[] = [];
    let answered = 0;
    try {
      const result = await run(flags(mock), {
        browser: async (start) => {
          // A browser's kept-alive connection and a pre-connected one: neither is ever closed by the client.
          for (
            const request of [`GET ${new URL(start).pathname} HTTP/1.1\r\nHost: ${new URL(start).host}\r\n\r\n`, ""]
          ) {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(start) });
            held.push(conn);
            if (request) await conn.write(new TextEncoder().encode(request));
          }
          const visit = await scriptedBrowser(start);
          answered = performance.now();
          return visit;
        },
      });
      const ended = performance.now() - answered;
      assertEquals(result.code, EXIT.ok, result.stderr);
      // Bounded by SHUTDOWN_GRACE_MS (1 s) in any case; without waiting for the clients it takes a few ms.
      assert(ended < 500, `the login ended ${Math.round(ended)} ms after the browser got its page`);
      await cleanUp(result);
    } finally {
      for (const conn of held) conn.close();
    }
  });
});

// ── Deno.serve, where no one else can reach it ──────────────────────────────────────────────────

Deno.test(
  "Deno.serve listens on a Unix socket in a private folder (0700), which is gone once the login ends",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await withMock(async (mock) => {
      const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
      const tmp = await Deno.makeTempDir({ prefix: "oauth-login-tmp-" });
      try {
        const login = await limitedLogin(mock, 1024, cache, { env: { TMPDIR: tmp } });
        const found: { name: string; mode: string; entries: string[] }[] = [];
        for await (const folder of Deno.readDir(tmp)) {
          const path = `${tmp}/${folder.name}`;
          const entries: string[] = [];
          for await (const entry of Deno.readDir(path)) {
            entries.push(`${entry.name}${(await Deno.lstat(`${path}/${entry.name}`)).isSocket ? " (a socket)" : ""}`);
          }
          const mode = ((await Deno.lstat(path)).mode! & 0o777).toString(8);
          found.push({ name: folder.name.replace(/[0-9a-f]+$/, "*"), mode, entries });
        }
        const visit = await scriptedBrowser(login.start);
        const { code, stderr } = await within(login.ended, 30_000, "the login process");
        assertEquals(code, EXIT.ok, stderr);
        assertEquals(visit.status, 200);
        assertEquals(found, [{ name: "oauth-login-*", mode: "700", entries: ["http.sock (a socket)"] }]);
        const left: string[] = [];
        for await (const entry of Deno.readDir(tmp)) left.push(entry.name);
        assertEquals(left, [], "the folder and its socket are removed");
      } finally {
        await Deno.remove(tmp, { recursive: true });
        await Deno.remove(cache, { recursive: true });
      }
    });
  },
);

Deno.test(
  "a TMPDIR too long for a Unix socket's path does not stop a login: the socket's folder goes to /tmp",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await withMock(async (mock) => {
      const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
      const tmp = await Deno.makeTempDir({ prefix: `oauth-login-${"t".repeat(80)}-` }); // over 104 bytes with the socket
      try {
        const login = await limitedLogin(mock, 1024, cache, { env: { TMPDIR: tmp } });
        const visit = await scriptedBrowser(login.start);
        const { code, stderr } = await within(login.ended, 30_000, "the login process");
        assertEquals(code, EXIT.ok, stderr);
        assertEquals(visit.status, 200);
        const left: string[] = [];
        for await (const entry of Deno.readDir(tmp)) left.push(entry.name);
        assertEquals(left, []);
      } finally {
        await Deno.remove(tmp, { recursive: true });
        await Deno.remove(cache, { recursive: true });
      }
    });
  },
);

Deno.test(
  "DENO_SERVE_ADDRESS never moves the callback server (Deno would serve the first server there)",
  { ignore: Deno.build.os === "windows" },
  async (t) => {
    await withMock(async (mock) => {
      for (const form of ["tcp:127.0.0.1:PORT", "duplicate,tcp:127.0.0.1:PORT"]) {
        await t.step(form, async () => {
          const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
          try {
            const port = freePort();
            const env = { DENO_SERVE_ADDRESS: form.replace("PORT", String(port)) };
            const login = await limitedLogin(mock, 1024, cache, { env });
            await assertPortClosed(port); // nothing listens where the variable points
            const visit = await scriptedBrowser(login.start);
            const { code, stderr } = await within(login.ended, 30_000, "the login process");
            assertEquals(code, EXIT.ok, stderr);
            assertEquals(visit.status, 200);
          } finally {
            await Deno.remove(cache, { recursive: true });
          }
        });
      }
    });
  },
);

Deno.test(
  "a login that may not read DENO_SERVE_ADDRESS refuses a callback server Deno moved (exit 2)",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await withMock(async (mock) => {
      const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
      try {
        const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
        const allowEnv = (config.permissions.login.env as string[]).filter((name) => name !== "DENO_SERVE_ADDRESS");
        const permissions = ALL_PERMISSIONS.map((flag) =>
          flag === "--allow-env" ? `${flag}=${allowEnv.join(",")}` : flag
        );
        const port = freePort();
        const env = { DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}` };
        const { code, stderr } = await loginCommand(mock, 1024, cache, { env, permissions }).output();
        const text = new TextDecoder().decode(stderr).replace(/\n +/g, " "); // unwrapped
        assertEquals({ code, text }, {
          code: EXIT.usage,
          text: `error: DENO_SERVE_ADDRESS moved the login's callback server to "127.0.0.1:${port}"\n` +
            "hint: unset DENO_SERVE_ADDRESS for the login, or let the login read it (--allow-env=DENO_SERVE_ADDRESS) " +
            "so that it sets it aside\n",
        });
        await assertPortClosed(port);
        assertEquals(await filesUnder(cache), []);
      } finally {
        await Deno.remove(cache, { recursive: true });
      }
    });
  },
);

Deno.test(
  "a login that may not use the temporary folder says which permissions the callback server needs (exit 2)",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await withMock(async (mock) => {
      const cache = await Deno.makeTempDir({ prefix: "oauth-login-callback-" });
      try {
        const home = Deno.env.get("HOME");
        const files = [cache, ".env", ...home ? [`${home}/.config`] : []].join(",");
        const permissions = [
          "--allow-net",
          "--allow-env",
          "--allow-run",
          `--allow-read=${files}`,
          `--allow-write=${cache}`,
        ];
        const { code, stderr } = await loginCommand(mock, 1024, cache, { permissions }).output();
        const text = new TextDecoder().decode(stderr).replace(/\n +/g, " "); // unwrapped
        assertEquals({ code, text }, {
          code: EXIT.usage,
          text: "error: Deno's permissions do not allow the callback server's socket in the temporary folder\n" +
            "hint: run again with --allow-read and --allow-write for the temporary folder (TMPDIR, else /tmp), " +
            "as the deno.json tasks grant\n",
        });
      } finally {
        await Deno.remove(cache, { recursive: true });
      }
    });
  },
);

// ── The start address ───────────────────────────────────────────────────────────────────────────

Deno.test("the start address is a random path that another local process cannot guess", async () => {
  await withMock(async (mock) => {
    const guesses: Record<string, number> = {};
    let leaked = "";
    const result = await run(flags(mock), {
      browser: async (start) => {
        const url = new URL(start);
        const sameLength = `/${"A".repeat(url.pathname.length - 1)}`;
        for (const path of ["/", "/index.html", sameLength, `${url.pathname}/`, `${url.pathname}?x=1`, "/callback"]) {
          const answer = await hit(new URL(path, url));
          guesses[path.replace(url.pathname, "START")] = answer.status;
          leaked += `${answer.headers.get("location") ?? ""}${answer.body}`;
        }
        return scriptedBrowser(start);
      },
    });
    try {
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertMatch(result.opened[0], new RegExp(`^http://127\\.0\\.0\\.1:\\d+${START_PATH}$`));
      assertEquals(guesses, {
        "/": 404,
        "/index.html": 404,
        "/AAAAAAAAAAAAAAAA": 404,
        "START/": 404,
        "START?x=1": 404,
        "/callback": 400,
      });
      const authorize = mock.calls("authorize")[0];
      for (const secret of [authorize.query.state, authorize.query.code_challenge]) {
        assert(!leaked.includes(secret), "a guess got the authorization request");
      }
      assertEquals(mock.calls("authorize").length, 1, "only the genuine browser reached the authorization endpoint");
      assertEquals(mock.calls("token").length, 1);
    } finally {
      await cleanUp(result);
    }
  });
});

Deno.test("each login has its own start address, which works for as long as the login waits", async () => {
  await withMock(async (mock) => {
    const starts: string[] = [];
    const locations: string[] = [];
    for (let i = 0; i < 2; i++) {
      const result = await run(flags(mock), {
        browser: async (start) => {
          starts.push(start);
          // Visited twice (a reload, or the printed address opened by hand): the same request each time.
          for (let visit = 0; visit < 2; visit++) locations.push((await authorizationUrl(start)).url.href);
          return scriptedBrowser(start);
        },
      });
      await cleanUp(result);
      assertEquals(result.code, EXIT.ok, result.stderr);
    }
    const paths = starts.map((start) => new URL(start).pathname);
    assert(paths[0] !== paths[1], `two logins had the same start path ${paths[0]}`);
    assertEquals(locations[0], locations[1]);
    assertEquals(locations[2], locations[3]);
    assert(locations[0] !== locations[2]);
  });
});

// ── What the server reads: Deno.serve's (hyper's) HTTP, behind the guard ─────────────────────────

/** Who refused a request: Deno.serve itself (an empty 400, before any handler) or the callback handler (its page). */
function refusedBy(answer: RawAnswer): string {
  return `${answer.status} from ${answer.text.includes("<!doctype html>") ? "the handler" : "Deno.serve"}`;
}

Deno.test("Deno.serve reads what browsers send; what it refuses never reaches the handler", async (t) => {
  await withMock(async (mock) => {
    const answers: Record<string, { got: string; expected: string }> = {};
    const result = await run(flags(mock), {
      browser: async (start) => {
        const port = portOf(start);
        const { state } = await authorizationUrl(start);
        const host = `Host: 127.0.0.1:${port}\r\n`;
        // Each carries the pending state and a forged code: one handed to the callback would end the login.
        const target = `/callback?code=forged&state=${state}`;
        const cases: Record<string, [string, string]> = {
          "a bare CR in a header": [`GET ${target} HTTP/1.1\r\n${host}X-A: 1\r2\r\n\r\n`, "400 from Deno.serve"],
          "a folded header line": [`GET ${target} HTTP/1.1\r\n${host}X-A: 1\r\n 2\r\n\r\n`, "400 from Deno.serve"],
          "two Host headers": [`GET ${target} HTTP/1.1\r\n${host}Host: evil.example\r\n\r\n`, "400 from Deno.serve"],
          "200 header lines": [
            `GET ${target} HTTP/1.1\r\n${host}${"X-A: 1\r\n".repeat(200)}\r\n`,
            "400 from Deno.serve",
          ],
          "a 70 KiB request line": [
            `GET ${target}&x=${"a".repeat(70 * 1024)} HTTP/1.1\r\n${host}\r\n`,
            "400 from Deno.serve",
          ],
          "TLS instead of HTTP": ["\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "400 from Deno.serve"],
          // Tokens that hyper takes as methods, for the handler to refuse.
          "a lowercase method": [`get ${target} HTTP/1.1\r\n${host}\r\n`, "405 from the handler"],
          "TRACE": [`TRACE ${target} HTTP/1.1\r\n${host}\r\n`, "405 from the handler"],
          // RFC 9112 §3.2.2: a server must accept the absolute form; the Host check still applies.
          "an absolute-form target with a foreign Host": [
            `GET http://127.0.0.1:${port}${target} HTTP/1.1\r\nHost: evil.example\r\n\r\n`,
            "400 from the handler",
          ],
          "a 9 KiB request line without a state": [
            `GET /callback?x=${"a".repeat(9 * 1024)} HTTP/1.1\r\n${host}\r\n`,
            "400 from the handler",
          ],
        };
        for (const [what, [request, expected]] of Object.entries(cases)) {
          answers[what] = { got: refusedBy(await raw(port, request)), expected };
        }
        // HTTP/2 with prior knowledge (h2c): Deno.serve speaks it, and the request carries no Host
        // header (only ":authority"), so the handler refuses it.
        const client = Deno.createHttpClient({ http1: false, http2: true });
        try {
          const h2 = await fetch(new URL(target, start), { client, redirect: "manual" });
          await h2.body?.cancel();
          answers["HTTP/2 with prior knowledge"] = { got: String(h2.status), expected: "400" };
        } finally {
          client.close();
        }
        // A POST with a body gets its whole 405 page, although the handler never reads the body.
        const post = await hit(new URL(target, start), { method: "POST", body: "x".repeat(200_000) });
        answers["a POST with a 200 KB body"] = {
          got: `${post.status} ${post.body.includes("Only GET")}`,
          expected: "405 true",
        };
        // The genuine callback, with 24 KiB of cookies (127.0.0.1's cookies go to every local port).
        const callback = await genuineCallback(start);
        const genuine = await hit(callback, { headers: { cookie: `a=${"c".repeat(24 * 1024)}` } });
        return { visited: [callback.href], ...genuine };
      },
    });
    try {
      for (const [what, { got, expected }] of Object.entries(answers)) {
        await t.step(what, () => assertEquals(got, expected));
      }
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(result.visit?.status, 200, "the genuine callback with 24 KiB of cookies is answered");
      assertEquals(mock.calls("token").length, 1);
      assert(mock.calls("token")[0].form.code !== "forged");
    } finally {
      await cleanUp(result);
    }
  });
});
