/**
 * The callback server under pressure (issue 19, section 4): a waiting login survives local
 * connections that use up its file descriptors and still completes with the genuine callback; the
 * start address (which redirects to the whole authorization request) cannot be guessed by another
 * local process, nor used by another user's program that read it in the opener's argv (the red
 * team's finding 2); and the server's own HTTP/1.1 reading stays within what browsers send. What
 * the tool hands to other programs: the opener gets none of its settings (OAUTH_CLIENT_SECRET), and
 * the device flow opens the address without the code and waits at most 30 minutes unless told.
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
  authorizationUrl,
  cleanLoginStderr,
  cleanUp,
  filesUnder,
  genuineCallback,
  hit,
  portOf,
  raw,
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

/**
 * Starts `login.ts login` as its own process under `ulimit -n LIMIT` (the test runner's own limit
 * is left alone), with a `$BROWSER` that opens nothing, and reads its stderr until it prints the
 * start address.
 */
async function limitedLogin(mock: ServedMock, limit: number, cache: string): Promise<LimitedLogin> {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n ${limit} && exec "$0" "$@"`,
      Deno.execPath(),
      "run",
      "--quiet",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      LOGIN_TS,
      "login",
      ...flags(mock, "--timeout", "20"),
    ],
    env: { BROWSER: "true", OAUTH_LOGIN_CACHE: cache, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
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
        assert(during - before <= 64, `the login held ${during - before} more sockets than before the 150 connections`);
      } finally {
        for (const conn of held) conn.close();
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

Deno.test("the start address answers only programs of the person's own user (or root); another user's is refused and named", async (t) => {
  const cases: [string, number, number, boolean][] = [
    ["another user's program is refused", 1000, 1001, false],
    ["root's is let through (it could read the process anyway)", 1000, 0, true],
    ["the person's own is let through", 1000, 1000, true],
  ];
  for (const [name, ours, theirs, admitted] of cases) {
    await t.step(name, async () => {
      await withMock(async (mock) => {
        let first: { status: number; location: string | null } | undefined;
        let asked = 0;
        const result = await run(flags(mock), {
          // The first program to ask has `theirs`'s uid; the person's browser, which comes next, is theirs own.
          socketOwners: () => Promise.resolve(asked++ === 0 ? { ours, theirs } : { ours, theirs: ours }),
          browser: async (start) => {
            const answer = await hit(start);
            first = { status: answer.status, location: answer.headers.get("location") };
            return scriptedBrowser(start);
          },
        });
        try {
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertEquals(first?.status, admitted ? 302 : 403);
          assertEquals(first?.location !== null, admitted, "only an admitted program gets the authorization request");
          const warning = `warning: A program of another user of this computer (uid ${theirs}) asked for the sign-in ` +
            "address and was refused; if it was your own browser, run the login with --no-browser and open the address it prints\n";
          assertEquals(result.stderr.includes(warning), !admitted, result.stderr);
          assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
        } finally {
          await cleanUp(result);
        }
      });
    });
  }
  await t.step("when ss fails or is too slow, nothing is let through", async () => {
    await withMock(async (mock) => {
      let first: number | undefined;
      let asked = 0;
      const result = await run(flags(mock), {
        socketOwners: () =>
          asked++ === 0 ? Promise.reject(new Error("ss timed out")) : Promise.resolve({ ours: 1, theirs: 1 }),
        browser: async (start) => {
          first = (await hit(start)).status;
          return scriptedBrowser(start);
        },
      });
      assertEquals([result.code, first], [EXIT.ok, 403], result.stderr);
      assertStringIncludes(
        result.stderr,
        "warning: A program (whose user ss could not tell) asked for the sign-in address and was refused;",
      );
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
      assertEquals([status, location ?? ""], ["403", ""], "another user's program got the authorization request");
      // The person's own browser (this process's uid, the login's) then signs in.
      const visit = await scriptedBrowser(start);
      assertEquals(visit.status, 200);
      const { code, stderr } = await within(ended, 30_000, "the login process");
      stop = () => Promise.resolve();
      const text = new TextDecoder().decode(stderr);
      assertEquals(code, EXIT.ok, text);
      assertStringIncludes(text.replace(/\s+/g, " "), "(uid 65534) asked for the sign-in address and was refused");
      assertStringIncludes(text, `Logged in as ${ALICE.username}\n`);
    } finally {
      await stop();
      await mock.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("doctor says whether the sign-in address is kept from other users' programs (ss installed) on Linux", async () => {
  const line = "ok    browser    the sign-in address answers only your own programs (ss tells them apart)\n";
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
    assert(!/browser +(the sign-in address|ss \()/.test(other.stdout), other.stdout);
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

/** A clock the device flow's pauses move instead of sleeping. */
function fakeClock(start = Date.UTC(2026, 0, 1)) {
  let now = start;
  return {
    now: () => now,
    sleep: (ms: number) => {
      now += ms;
      return Promise.resolve();
    },
  };
}

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
        const clock = fakeClock();
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

// ── What the server reads: within what browsers send, nothing else ──────────────────────────────

Deno.test("the callback server reads what browsers send and refuses malformed requests", async (t) => {
  await withMock(async (mock) => {
    const answers: Record<string, { status?: number; expected: number }> = {};
    const result = await run(flags(mock), {
      browser: async (start) => {
        const port = portOf(start);
        const { state } = await authorizationUrl(start);
        const host = `Host: 127.0.0.1:${port}\r\n`;
        const target = `/callback?code=forged&state=${state}`;
        const cases: Record<string, [string, number]> = {
          "a lowercase method": [`get ${target} HTTP/1.1\r\n${host}\r\n`, 400],
          "a bare CR in a header": [`GET ${target} HTTP/1.1\r\n${host}X-A: 1\r2\r\n\r\n`, 400],
          "a folded header line": [`GET ${target} HTTP/1.1\r\n${host}X-A: 1\r\n 2\r\n\r\n`, 400],
          "an absolute-form target": [`GET http://127.0.0.1:${port}${target} HTTP/1.1\r\n${host}\r\n`, 400],
          "HTTP/2 with prior knowledge": ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400],
          "a forbidden method (TRACE)": [`TRACE ${target} HTTP/1.1\r\n${host}\r\n`, 400],
          "101 header lines": [`GET ${target} HTTP/1.1\r\n${host}${"X-A: 1\r\n".repeat(100)}\r\n`, 431],
          "a 9 KiB request line": [`GET /callback?x=${"a".repeat(9 * 1024)} HTTP/1.1\r\n${host}\r\n`, 414],
        };
        for (const [what, [request, expected]] of Object.entries(cases)) {
          answers[what] = { status: (await raw(port, request)).status, expected };
        }
        // A POST with a body gets its whole 405 page: the server reads on after its answer, so that
        // closing does not reset the connection under the answer.
        const post = await hit(new URL(target, start), { method: "POST", body: "x".repeat(200_000) });
        answers["a POST with a 200 KB body"] = { status: post.status, expected: 405 };
        // The genuine callback, with 24 KiB of cookies (127.0.0.1's cookies go to every local port).
        const callback = await genuineCallback(start);
        const genuine = await hit(callback, { headers: { cookie: `a=${"c".repeat(24 * 1024)}` } });
        return { visited: [callback.href], ...genuine };
      },
    });
    try {
      for (const [what, { status, expected }] of Object.entries(answers)) {
        await t.step(what, () => assertEquals(status, expected));
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
