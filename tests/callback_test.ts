/**
 * The callback server under pressure (issue 19, section 4): a waiting login survives local
 * connections that use up its file descriptors and still completes with the genuine callback; the
 * start address (which redirects to the whole authorization request) cannot be guessed by another
 * local process, nor used by another user's program that read it in the opener's argv (the red
 * team's finding 2: the guard answers only the user's own programs); Deno.serve, which parses the
 * HTTP, listens only on a Unix socket in a private folder (behind the connection guard on the loopback
 * port), wherever DENO_SERVE_ADDRESS points; and what Deno.serve refuses never reaches the callback
 * handler. What the tool hands to other programs: the opener gets none of its settings
 * (OAUTH_CLIENT_SECRET), and the device flow opens the address without the code and waits at most
 * 30 minutes unless told.
 *
 *     deno test --allow-net --allow-env --allow-read --allow-write --allow-run tests/callback_test.ts
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { EXIT, testing } from "../login.ts";
import {
  ALICE,
  CONFIDENTIAL_CLIENT,
  type MockUser,
  PUBLIC_CLIENT,
  type ServedMock,
  serveMockIssuer,
} from "./mock_issuer.ts";
import {
  assertPortClosed,
  authorizationUrl,
  cleanLoginStderr,
  cleanUp,
  fakeClock,
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

const MALLORY: MockUser = {
  sub: "00u9mallory",
  username: "mallory@evil.example",
  email: "mallory@evil.example",
  name: "Mallory",
};

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
        let answered = 0;
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
          streams.push((async () => {
            try {
              if (await conn.read(new Uint8Array(1024)) !== null) answered++;
            } catch { /* cut by the server */ }
          })());
        }
        // Each has had its answer (405) and sent more since: none is idle, all are busy. The answers come
        // once the guard has told whose program each connection is (ss), later on a loaded machine.
        for (let waited = 0; answered < 64 && waited < 5_000; waited += 100) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
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

// ── The start address is in the opener's argv: only the person's own programs get it (red team, finding 2) ──

Deno.test("socketOwners() reads both ends' owners from ss: uid:N, or none for root", () => {
  const ss = [
    "LISTEN     0      511    127.0.0.1:42753   0.0.0.0:*     uid:1000 ino:1307879 sk:32b5 cgroup:/ <->",
    "ESTAB      0      0      127.0.0.1:54766 127.0.0.1:42753 timer:(keepalive,59sec,0) uid:1001 ino:1205220 sk:26 <->",
    "ESTAB      0      0      127.0.0.1:42753 127.0.0.1:54766 uid:1000 ino:1206194 sk:32 cgroup:/ <->",
    "ESTAB      0      0      [::1]:5001 [::1]:43000 uid:1000 ino:1 sk:3 <->",
    "FIN-WAIT-2 0      0      [::1]:43000 [::1]:5001 ino:2 sk:4 <--",
  ].join("\n");
  const at = (hostname: string, port: number): Deno.NetAddr => ({ transport: "tcp", hostname, port });
  assertEquals(testing.socketOwners(ss, at("127.0.0.1", 42753), at("127.0.0.1", 54766)), { ours: 1000, theirs: 1001 });
  assertEquals(testing.socketOwners(ss, at("::1", 5001), at("::1", 43000)), { ours: 1000, theirs: 0 });
  assertEquals(testing.socketOwners(ss, at("127.0.0.1", 42753), at("127.0.0.1", 1)), undefined, "no such connection");
  assertEquals(testing.socketOwners("", at("127.0.0.1", 42753), at("127.0.0.1", 54766)), undefined);
});

Deno.test({
  name: "loopbackSocketOwners() finds a client that half-closed its end after the request (FIN-WAIT-2), with ss",
  ignore: Deno.build.os !== "linux" || !installed("ss"),
  fn: async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port });
    const served = await listener.accept();
    try {
      await client.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
      await client.closeWrite(); // it can still read the answer
      await served.read(new Uint8Array(64));
      const owners = await testing.loopbackSocketOwners(
        served.localAddr as Deno.NetAddr,
        served.remoteAddr as Deno.NetAddr,
      );
      assert(owners !== undefined, "a half-closed client is not told apart (a way around the check)");
      assertEquals(owners.theirs, owners.ours);
    } finally {
      served.close();
      client.close();
      listener.close();
    }
  },
});

Deno.test("the callback server answers only programs of the person's own user (or root); another user's is cut off and named", async (t) => {
  const cases: [string, number, number, boolean][] = [
    ["another user's program is cut off", 1000, 1001, false],
    ["root's is let through (it could read the process anyway)", 1000, 0, true],
    ["the person's own is let through", 1000, 1000, true],
  ];
  const warning = (who: string) =>
    `warning: ${who} connected to the sign-in server and was refused; if it was your browser, run the login as ` +
    "the user your browser runs as\n";
  for (const [name, ours, theirs, admitted] of cases) {
    await t.step(name, async () => {
      await withMock(async (mock) => {
        let first: number | "cut" | undefined;
        let asked = 0;
        const result = await run(flags(mock), {
          // The first program to connect has `theirs`'s uid; the person's browser, which comes next, is their own.
          socketOwners: () => Promise.resolve(asked++ === 0 ? { ours, theirs } : { ours, theirs: ours }),
          browser: async (start) => {
            first = await hit(start).then((answer) => answer.status, () => "cut" as const);
            return scriptedBrowser(start);
          },
        });
        try {
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertEquals(first, admitted ? 302 : "cut", "only an admitted program gets an answer");
          const named = warning(`A program of another user of this computer (uid ${theirs})`);
          assertEquals(result.stderr.includes(named), !admitted, result.stderr);
          assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
        } finally {
          await cleanUp(result);
        }
      });
    });
  }
  await t.step("when ss fails or is too slow, nothing is let through", async () => {
    await withMock(async (mock) => {
      let first: number | "cut" | undefined;
      let asked = 0;
      const result = await run(flags(mock), {
        socketOwners: () =>
          asked++ === 0 ? Promise.reject(new Error("ss timed out")) : Promise.resolve({ ours: 1, theirs: 1 }),
        browser: async (start) => {
          first = await hit(start).then((answer) => answer.status, () => "cut" as const);
          return scriptedBrowser(start);
        },
      });
      assertEquals([result.code, first], [EXIT.ok, "cut"], result.stderr);
      assertStringIncludes(result.stderr, warning("A program (whose user ss could not tell)"));
      await cleanUp(result);
    });
  });
  await t.step("a program whose owner cannot be told is let through", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock), {
        socketOwners: () => Promise.resolve(undefined),
        browser: scriptedBrowser,
      });
      assertEquals(result.code, EXIT.ok, result.stderr);
      await cleanUp(result);
    });
  });
});

/**
 * Every http://127.0.0.1:PORT/<16 characters> in the argv of the machine's processes that run `program`,
 * as `ps` shows them to anyone.
 */
async function startAddressesInProcessList(program: string): Promise<string[]> {
  const { stdout } = await new Deno.Command("ps", { args: ["-eo", "args="], stderr: "null" }).output();
  const lines = new TextDecoder().decode(stdout).split("\n").filter((line) => line.includes(program));
  return lines.join("\n").match(/http:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{16}(?![\w/-])/g) ?? [];
}

/** Whether the tests run as root (asked of a file's owner: the test task grants no sys permission). */
function asRoot(): boolean {
  const probe = Deno.makeTempFileSync({ prefix: "oauth-login-uid-" });
  try {
    return Deno.statSync(probe).uid === 0;
  } finally {
    Deno.removeSync(probe);
  }
}

/** Whether a program is on PATH. */
function installed(program: string): boolean {
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/${program}`).isFile;
    } catch {
      return false;
    }
  });
}

Deno.test({
  name: "another local user who reads the start address in the process list cannot use it (real processes, uid 65534)",
  // Another uid needs root; the owners come from ss (iproute2), and the attacker is curl.
  ignore: Deno.build.os !== "linux" || !asRoot() || !installed("ss") || !installed("curl"),
  fn: async () => {
    const mock = serveMockIssuer({ user: ALICE, users: [ALICE, MALLORY], clients: [PUBLIC_CLIENT] });
    const dir = await Deno.makeTempDir({ prefix: "oauth-login-argv-" });
    let stop = () => Promise.resolve();
    try {
      // The person's browser: started with the address in its argv (as xdg-open and a first browser
      // instance are), and slower than a script to act on it (the person reads the page, types a password).
      const browser = `${dir}/browser.sh`;
      await Deno.writeTextFile(browser, "#!/bin/sh\nsleep 5\n");
      await Deno.chmod(browser, 0o755);
      await Deno.mkdir(`${dir}/cache`, { mode: 0o700 });
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", LOGIN_TS, "login", ...flags(mock), "--timeout", "20"],
        env: { DISPLAY: ":0", BROWSER: browser, OAUTH_LOGIN_CACHE: `${dir}/cache`, NO_COLOR: "1" },
        cwd: dir,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const ended = child.output();
      stop = async () => {
        try {
          child.kill();
        } catch { /* it has ended */ }
        await ended;
      };
      let start: string | undefined;
      for (let i = 0; i < 500 && !start; i++) {
        start = (await startAddressesInProcessList(browser))[0];
        if (!start) await new Promise((r) => setTimeout(r, 20));
      }
      assert(start, "the start address was in the process list (this case reads it there, as another user would)");
      // Another local user (uid 65534) fetches it first.
      const attacker = await new Deno.Command("curl", {
        args: ["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", start],
        uid: 65534,
        gid: 65534,
        cwd: "/", // a folder that uid may enter
        stdout: "piped",
        stderr: "null",
      }).output();
      const [status, location] = new TextDecoder().decode(attacker.stdout).split(" ");
      assertEquals([status, location ?? ""], ["000", ""], "another user's program got an answer");
      // The person's own browser (this process's uid, the login's) then signs in.
      const visit = await scriptedBrowser(start);
      assertEquals(visit.status, 200);
      const { code, stderr } = await within(ended, 30_000, "the login process");
      stop = () => Promise.resolve();
      const text = new TextDecoder().decode(stderr);
      assertEquals(code, EXIT.ok, text);
      assertStringIncludes(text.replace(/\s+/g, " "), "(uid 65534) connected to the sign-in server and was refused");
      assertStringIncludes(text, `Logged in as ${ALICE.username}\n`);
    } finally {
      await stop();
      await mock.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("doctor says whether the sign-in address is kept from other users' programs (ss installed) on Linux", async () => {
  const line = "ok    browser    the callback server answers only your own programs (ss tells them apart)\n";
  const warning = "warn  browser    ss (iproute2) is not installed, so another local user who reads the opener's " +
    "arguments could use the sign-in address first: install iproute2, or use --no-browser\n";
  const offline = () => Promise.reject(new Error("no network in this case"));
  const args = ["doctor", "--issuer", "https://idp.example", "--client-id", "c"];
  const withSs = await run(args, { fetch: offline });
  const withoutSs = await run(args, { fetch: offline, which: (program) => program !== "ss" });
  const noBrowser = await run([...args, "--no-browser"], { fetch: offline, which: (program) => program !== "ss" });
  const mac = await run(args, { fetch: offline, os: "darwin", which: (program) => program !== "ss" });
  assertStringIncludes(withSs.stdout, line);
  assertStringIncludes(withoutSs.stdout, warning);
  for (const other of [noBrowser, mac]) {
    assert(!/browser +(the callback server|ss \()/.test(other.stdout), other.stdout);
  }
  for (const result of [withSs, withoutSs, noBrowser, mac]) await cleanUp(result);
});

Deno.test("the login task may run ss, which tells the start address's callers apart", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert(config.permissions.login.run.includes("ss"), "deno.json's login permission set runs ss");
});

// ── What the opener and the device flow hand to other programs (red team, the code review) ────────

Deno.test(
  "the browser opener gets none of the tool's settings in its environment: no OAUTH_CLIENT_SECRET (real process)",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    await withMock(async (mock) => {
      const dir = await Deno.makeTempDir({ prefix: "oauth-login-opener-" });
      try {
        // A browser that writes down what it was given, then stays open.
        const browser = `${dir}/browser.sh`;
        await Deno.writeTextFile(
          browser,
          `#!/bin/sh\nenv > "${dir}/env.txt"\necho "$@" > "${dir}/argv.txt"\n`,
        );
        await Deno.chmod(browser, 0o755);
        await Deno.mkdir(`${dir}/cache`, { mode: 0o700 });
        const { code, stderr } = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            LOGIN_TS,
            "login",
            "--issuer",
            mock.issuer,
            "--client-id",
            CONFIDENTIAL_CLIENT.id,
            "--timeout",
            "1",
          ],
          env: {
            DISPLAY: ":0",
            BROWSER: browser,
            OAUTH_LOGIN_CACHE: `${dir}/cache`,
            OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret!,
            OAUTH_SCOPE: "openid",
            NO_COLOR: "1",
          },
          cwd: dir,
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).output();
        assertEquals(code, EXIT.timedOut, new TextDecoder().decode(stderr));
        const env = await Deno.readTextFile(`${dir}/env.txt`);
        assert(!env.includes(CONFIDENTIAL_CLIENT.secret!), "the opener's environment holds the client secret");
        assertEquals(env.split("\n").filter((line) => /^OAUTH_\w+=./.test(line)), [], "no OAUTH_ setting reaches it");
        assertMatch(
          await Deno.readTextFile(`${dir}/argv.txt`),
          new RegExp(`^http://127\\.0\\.0\\.1:\\d+${START_PATH}\n$`),
        );
        assertStringIncludes(env, "DISPLAY=:0\n", "the rest of the environment is the browser's");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
);

Deno.test("the device flow waits at most 30 minutes for a code the server says lives a year, unless --timeout says more", async (t) => {
  for (
    const [name, extra, limit, suffix] of [
      ["no --timeout: 30 minutes", [], "30 minutes", ""],
      ["--timeout 3600: an hour", ["--timeout", "3600"], "60 minutes", " (--timeout)"],
    ] as const
  ) {
    await t.step(name, async () => {
      await withMock(async (mock) => {
        mock.device.expiresIn = 365 * 86_400;
        mock.device.interval = 300;
        mock.device.pending = 1_000_000;
        const clock = fakeClock(Date.UTC(2026, 0, 1));
        const result = await run(flags(mock, "--flow", "device", ...extra), clock);
        assertEquals(result.code, EXIT.timedOut, result.stderr);
        assertStringIncludes(result.stderr, `Waiting for you to approve, for up to ${limit} (Ctrl-C cancels)\n`);
        assertStringIncludes(result.stderr, `error: The sign-in was not approved within ${limit}${suffix}\n`);
        assertEquals(clock.now() - Date.UTC(2026, 0, 1), limit === "30 minutes" ? 30 * 60_000 : 60 * 60_000);
        // The browser opened on the address without the code (the code is typed): an opener's argv is anyone's to read.
        assertEquals(result.opened, [`${mock.issuer}/device`]);
        await cleanUp(result);
      });
    });
  }
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
