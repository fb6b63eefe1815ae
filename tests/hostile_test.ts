/**
 * Hostile and broken inputs (SECURITY.md section 2): the callback server under raw TCP abuse, a
 * hostile or broken issuer, and a hostile environment. Every case states its expected outcome in
 * its name and asserts the exact stderr, the exit code, a bound on the run time, that no token or
 * secret is printed, and that nothing is written to the (temporary) home and cache directories.
 *
 *     deno test --allow-net --allow-env --allow-read --allow-write --allow-run tests/hostile_test.ts
 *
 * The cases against the callback server share one skeleton, {@link callbackCase}.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { EXIT, fileStorage } from "../login.ts";
import { type BrowserVisit, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import {
  type Answer,
  assertNoLeaks,
  assertNothingSaved,
  assertPortClosed,
  authorizationUrl,
  BOUND_MS,
  cleanLoginStderr,
  cleanUp,
  endlessBody,
  filesUnder,
  gate,
  genuineCallback,
  hit,
  json,
  portOf,
  raw,
  type RawAnswer,
  rawGet,
  type Run,
  run,
  type RunOptions,
  scriptedBrowser,
  secretsOf,
  signal,
  silentServer,
  WAITING_LINE,
  within,
  withMock,
} from "./_harness.ts";

// ── Shared expectations ─────────────────────────────────────────────────────────────────────────

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

/** The genuine callback completed the login: exit 0, a clean terminal, one code exchanged, no leak. */
async function assertLoggedIn(result: Run, mock: ServedMock): Promise<void> {
  try {
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(result.stderr, cleanLoginStderr(result.opened[0], `127.0.0.1:${mock.port}`));
    assertEquals(result.stdout, "");
    assertEquals(result.visit?.status, 200);
    assertStringIncludes(result.visit!.body, "Signed in as alice@example.com");
    const tokens = mock.calls("token");
    assertEquals(tokens.length, 1, "exactly one code exchange");
    assert(!tokens[0].form.code.startsWith("forged"), "the genuine code was exchanged, not a forged one");
    assertNoLeaks(result, secretsOf(mock));
    await assertPortClosed(portOf(result.opened[0]));
    await assertSavedOnce(result);
  } finally {
    await cleanUp(result);
  }
}

/** A successful login saved exactly one owner-only entry, and left no temporary or lock file. */
async function assertSavedOnce(result: Run): Promise<void> {
  const files = await filesUnder(result.home);
  assertEquals(files.length, 1, `one cache entry, nothing else: ${files.join(", ")}`);
  assertMatch(files[0], /^cache\/127\.0\.0\.1-[0-9a-f]{16}\.json$/);
  if (Deno.build.os !== "windows") assertEquals((await Deno.stat(`${result.home}/${files[0]}`)).mode! & 0o777, 0o600);
}

/** A failed run: exactly this stderr and exit code, no secret printed, nothing saved. */
async function assertFailed(result: Run, mock: ServedMock | undefined, code: number, stderr: string): Promise<void> {
  try {
    assertEquals({ code: result.code, stderr: result.stderr }, { code, stderr });
    assertEquals(result.stdout, "");
    assertNoLeaks(result, mock ? secretsOf(mock) : []);
  } finally {
    await assertNothingSaved(result);
  }
}

/** The raw connection was refused: a 4xx answer, or the server hung up without answering. */
function assertRefused(answer: RawAnswer, what: string): void {
  if (answer.status === undefined) {
    assert(answer.closed, `${what}: no answer, and the connection was not closed`);
    assertEquals(answer.text, "", `${what}: a partial answer`);
  } else {
    assert(answer.status >= 400 && answer.status < 500, `${what}: got HTTP ${answer.status}, expected a 4xx`);
  }
}

const OPENING = (mock: ServedMock, start: string) =>
  `Opening your browser to sign in at 127.0.0.1:${mock.port} ...\nIf it does not open, visit: ${start}\n` +
  WAITING_LINE;

// ── 2.1 The loopback callback server, over raw TCP while a login is pending ─────────────────────

/** One case against the callback server (see {@link callbackCase}). */
interface CallbackCase<T> {
  /** Plays the attacker while the login waits, given the short loopback address and its port. */
  attack: (start: string, port: number) => Promise<T>;
  /** Checks what the attack got back, before the checks of a clean login. */
  check: (found: T, result: Run) => void;
  /** The genuine browser afterwards; by default the scripted one, which approves. */
  browse?: (start: string, found: T) => Promise<BrowserVisit>;
  /** More options for the run (say, a fetch that holds an answer back). */
  options?: RunOptions;
}

/**
 * The skeleton of every case in this section: a login is pending; `attack` runs first, as a hostile
 * page or local process would; then the genuine browser signs in. The case passes when `check`
 * accepts what the attack got and the login completed cleanly ({@link assertLoggedIn}: exit 0, a
 * clean terminal, one genuine code exchange, no leak, the port closed, one owner-only entry saved).
 * `make` runs inside the test, so each run gets fresh state.
 */
function callbackCase<T>(name: string, make: (mock: ServedMock) => CallbackCase<T>): void {
  Deno.test(name, async () => {
    await withMockRun(async (mock) => {
      const { attack, check, browse = (start: string) => scriptedBrowser(start), options } = make(mock);
      let found!: T;
      const result = await run(flags(mock), {
        ...options,
        browser: async (start) => {
          found = await attack(start, portOf(start));
          return browse(start, found);
        },
      });
      try {
        check(found, result);
      } catch (error) {
        await cleanUp(result);
        throw error;
      }
      await assertLoggedIn(result, mock);
    });
  });
}

callbackCase(
  "L2 garbage bytes at the callback server → 400 or the connection drops; the login completes (exit 0)",
  () => ({
    attack: async (_start, port) => [
      // A TLS ClientHello, random binary, and a lone NUL line.
      await raw(port, new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03])),
      await raw(port, crypto.getRandomValues(new Uint8Array(4096))),
      await raw(port, "\x00\r\n\r\n"),
    ],
    check: (answers) => answers.forEach((answer, i) => assertRefused(answer, `garbage #${i}`)),
  }),
);

callbackCase(
  "L2 a request line with no path (and HTTP/0.9, bare LF) → 400 or dropped; the login completes",
  () => ({
    attack: async (_start, port) => {
      const host = `127.0.0.1:${port}`;
      return {
        "GET HTTP/1.1": await raw(port, `GET HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
        "GET": await raw(port, "GET\r\n\r\n"),
        "GET / (HTTP/0.9)": await raw(port, "GET /\r\n\r\n"),
        "GET  /callback (two spaces)": await raw(port, `GET  /callback HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
        "bare LF": await raw(port, `GET /callback?code=forged&state=x HTTP/1.1\nHost: ${host}\n\n`),
      };
    },
    check: (answers) => Object.entries(answers).forEach(([what, answer]) => assertRefused(answer, what)),
  }),
);

callbackCase(
  "L16 100 KB of headers (one huge header; 2,000 small ones) → 4xx or dropped; the login completes",
  () => ({
    attack: async (start, port) => {
      const { state } = await authorizationUrl(start);
      const head = `GET /callback?code=forged&state=${state} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
      return {
        "one 100 KB header": await raw(port, `${head}X-Big: ${"a".repeat(100 * 1024)}\r\n\r\n`),
        "2,000 headers": await raw(port, `${head}${"X-Many: 0123456789abcdef0123456789\r\n".repeat(2000)}\r\n`),
      };
    },
    check: (answers) => Object.entries(answers).forEach(([what, answer]) => assertRefused(answer, what)),
  }),
);

callbackCase(
  "L14 a missing Host header (HTTP/1.1 and 1.0) with the right state → 400, state not consumed; login completes",
  () => ({
    attack: async (start, port) => {
      const { state } = await authorizationUrl(start);
      const target = `/callback?code=forged&state=${state}`;
      return {
        "HTTP/1.1": await rawGet(port, target, {}),
        "HTTP/1.0": await rawGet(port, target, {}, "1.0"),
        "HTTP/1.1 empty Host": await rawGet(port, target, { Host: "" }),
      };
    },
    check: (answers) => {
      for (const [what, answer] of Object.entries(answers)) {
        assertEquals(answer.status, 400, what);
        assertStringIncludes(answer.text, "This server only answers the sign-in in progress in your terminal.", what);
      }
    },
  }),
);

callbackCase(
  "L14 a foreign Host header (DNS rebinding) with the right state → 400, state not consumed; login completes",
  () => ({
    attack: async (start, port) => {
      const { state } = await authorizationUrl(start);
      const target = `/callback?code=forged&state=${state}`;
      const answers: Record<string, RawAnswer> = {};
      for (const host of [`evil.example:${port}`, "evil.example", `localhost:${port}`, `127.0.0.1:${port + 1}`]) {
        answers[host] = await rawGet(port, target, { Host: host });
      }
      answers["127.0.0.1"] = await rawGet(port, target, { Host: "127.0.0.1" });
      answers["two Host headers"] = await raw(
        port,
        `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
      );
      return answers;
    },
    check: (answers, result) => {
      for (const [what, answer] of Object.entries(answers)) assertRefused(answer, what);
      for (const host of [`evil.example:${portOf(result.opened[0])}`, "evil.example", "127.0.0.1"]) {
        assertEquals(answers[host].status, 400, host);
      }
    },
  }),
);

Deno.test(
  "a slow client that never finishes its headers blocks neither the genuine callback nor the shutdown",
  async () => {
    await withMockRun(async (mock) => {
      const slow: Deno.Conn[] = [];
      let port = 0;
      try {
        const result = await run(flags(mock), {
          browser: async (start) => {
            port = portOf(start);
            const { state } = await authorizationUrl(start);
            const connect = () => Deno.connect({ hostname: "127.0.0.1", port });
            const encode = (text: string) => new TextEncoder().encode(text);
            slow.push(await connect()); // connects and says nothing
            const partialLine = await connect();
            slow.push(partialLine);
            await partialLine.write(encode("GET /callb"));
            const partialHeaders = await connect();
            slow.push(partialHeaders);
            await partialHeaders.write(
              encode(`GET /callback?code=forged&state=${state} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: 1`),
            );
            return scriptedBrowser(start);
          },
        });
        // The shutdown waits at most its 1 s grace for open connections, however many dawdle.
        assert(result.ms < 3_000, `the login took ${Math.round(result.ms)} ms with slow clients connected`);
        await assertLoggedIn(result, mock);
      } finally {
        for (const conn of slow) conn.close();
      }
    });
  },
);

callbackCase(
  "L4 POST, PUT, DELETE and HEAD on /callback with the right state → 405 (Allow: GET); login completes",
  () => ({
    attack: async (start) => {
      const { state } = await authorizationUrl(start);
      const target = new URL(`/callback?code=forged&state=${state}`, start);
      const answers: Record<string, Answer> = {};
      for (const method of ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"]) {
        answers[method] = await hit(target, { method, body: method === "POST" ? "code=forged" : undefined });
      }
      return answers;
    },
    check: (answers) => {
      for (const [method, answer] of Object.entries(answers)) {
        assertEquals(answer.status, 405, method);
        assertEquals(answer.headers.get("allow"), "GET", method);
      }
    },
  }),
);

callbackCase("L5 /callback without parameters → 400 'carries no state'; the login completes", () => ({
  attack: async (start) => [
    await hit(new URL("/callback", start)),
    await hit(new URL("/callback?", start)),
    await hit(new URL("/callback?code=forged", start)),
  ],
  check: (answers) => {
    for (const answer of answers) {
      assertEquals(answer.status, 400);
      assertStringIncludes(
        answer.body,
        "This request carries no state, so it cannot belong to the sign-in in progress.",
      );
    }
  },
}));

callbackCase("L7 a duplicated state parameter (same or different values) → 400; the login completes", () => ({
  attack: async (start) => {
    const { state } = await authorizationUrl(start);
    const answers: Answer[] = [];
    for (const query of [`state=${state}&state=${state}`, `state=${state}&state=other`, `state=&state=${state}`]) {
      answers.push(await hit(new URL(`/callback?code=forged&${query}`, start)));
    }
    return answers;
  },
  check: (answers) => {
    for (const answer of answers) {
      assertEquals(answer.status, 400);
      assertStringIncludes(answer.body, "This request does not belong to the sign-in in progress in your terminal.");
    }
  },
}));

for (const duplicated of ["code=forged-a&code=forged-b&iss={iss}", "code=forged&iss={iss}&iss={iss}"]) {
  callbackCase(
    `L7 a duplicated ${
      duplicated.includes("code=forged-a") ? "code" : "iss"
    } with the right state → 400 and no exchange; the login still completes`,
    (mock) => ({
      attack: async (start) => {
        const { state } = await authorizationUrl(start);
        const query = duplicated.replaceAll("{iss}", encodeURIComponent(mock.issuer));
        return await hit(new URL(`/callback?${query}&state=${state}`, start));
      },
      check: (answer) => {
        assertEquals(answer.status, 400, duplicated);
        assertStringIncludes(answer.body, "appears more than once. Nothing was changed.");
      },
    }),
  );
}

callbackCase("a callback with the right state but neither code nor error → 400; the login still completes", (mock) => ({
  attack: async (start) => {
    const { state } = await authorizationUrl(start);
    return await hit(new URL(`/callback?state=${state}&iss=${encodeURIComponent(mock.issuer)}`, start));
  },
  check: (answer) => {
    assertEquals(answer.status, 400);
    assertStringIncludes(answer.body, "The response must carry either a code or an error.");
  },
}));

callbackCase(
  "a burst of 300 stray requests → every one a 4xx, nothing exchanged; the genuine callback then completes",
  () => ({
    attack: (start, port) => {
      const targets = Array.from({ length: 300 }, (_, i) =>
        [
          `/callback?code=forged-${i}&state=wrong-${i}`,
          `/callback?error=access_denied&n=${i}`,
          `/favicon.ico?n=${i}`,
        ][i % 3]);
      return Promise.all(
        targets.map((target, i) =>
          i % 10 === 0
            ? rawGet(port, target, { Host: "evil.example" }).then((a) => a.status ?? 0)
            : hit(new URL(target, start)).then((a) => a.status)
        ),
      );
    },
    check: (statuses) => {
      assertEquals(statuses.length, 300);
      assertEquals(statuses.filter((s) => s < 400 || s >= 500), [], "only 4xx answers");
    },
  }),
);

callbackCase(
  "L8 /callback?error=access_denied with a wrong or no state → 400; the login is not ended (exit 0, not 3)",
  () => ({
    attack: async (start) => {
      const { state } = await authorizationUrl(start);
      const wrong = `${state.slice(0, -1)}${state.endsWith("A") ? "B" : "A"}`; // one character off
      const answers: Answer[] = [];
      for (const query of [`state=${wrong}`, "state=wrong", ""]) {
        answers.push(await hit(new URL(`/callback?error=access_denied&error_description=no&${query}`, start)));
      }
      return answers;
    },
    check: (answers) => {
      for (const answer of answers) {
        assertEquals(answer.status, 400);
        assertStringIncludes(answer.body, "Not the sign-in in progress");
        assertStringIncludes(answer.body, "Nothing was changed.");
      }
    },
  }),
);

callbackCase(
  "L12 a reload of the genuine callback once its code is exchanged → 400 'Already handled'; one token request",
  () => {
    // The token endpoint's answer is held until the reload is answered: the code is used up at the
    // server, and the callback server is certainly still listening (after the success page it is gone).
    const exchanged = signal();
    const held = gate();
    const holdTokenAnswer: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (String(input instanceof Request ? input.url : input).endsWith("/token")) {
        exchanged.resolve();
        await held.wait;
      }
      return response;
    };
    return {
      options: { fetch: holdTokenAnswer, onOverrun: held.open },
      attack: async (start) => {
        const callback = await genuineCallback(start);
        const first = hit(callback);
        await exchanged.promise;
        const reload = await hit(callback).finally(held.open);
        return { callback, first: await first, reload };
      },
      browse: (_start, { callback, first }) => Promise.resolve({ visited: [callback.href], ...first }),
      check: ({ reload, callback }) => {
        assertEquals(reload.status, 400);
        assertStringIncludes(reload.body, "This sign-in was already handled.");
        assert(callback.searchParams.has("code"));
      },
    };
  },
);

callbackCase(
  "L12 the genuine callback twice at once → one 200, one 400 'Already handled'; one token request",
  () => ({
    attack: async (start) => {
      const callback = await genuineCallback(start);
      const both = await Promise.all([
        hit(callback).catch(() => "refused" as const),
        hit(callback).catch(() => "refused" as const),
      ]);
      return { callback, both };
    },
    browse: (_start, { callback, both }) => {
      const ok = both.find((a) => a !== "refused" && a.status === 200);
      assert(ok && ok !== "refused", `one of the two is answered 200: ${JSON.stringify(both)}`);
      return Promise.resolve({ visited: [callback.href], ...ok });
    },
    check: ({ both }) => {
      const second = both.find((a) => a === "refused" || a.status !== 200);
      if (second !== "refused") {
        assertEquals(second?.status, 400);
        assertStringIncludes(second!.body, "This sign-in was already handled.");
      }
    },
  }),
);

// ── 2.3 A hostile or broken issuer ──────────────────────────────────────────────────────────────

async function assertMismatch(mock: ServedMock, said: string, difference: string, shown = said): Promise<void> {
  mock.metadata.issuer = said;
  const result = await run(flags(mock));
  assertEquals(result.opened, [], "the browser is not opened");
  assertEquals(mock.requests.map((r) => r.path), ["/.well-known/oauth-authorization-server/oauth2/default"]);
  await assertFailed(
    result,
    mock,
    EXIT.usage,
    `error: Issuer mismatch: asked for "${mock.issuer}", the server says "${shown}"\n` +
      `hint: ${difference}: if the server's value is the one you meant, use --issuer ${shown}\n`,
  );
}

Deno.test(
  "D1 metadata naming another host → 'Issuer mismatch', exit 2, no browser",
  async () => {
    await withMockRun(async (mock) => {
      await assertMismatch(mock, mock.issuer.replace("127.0.0.1", "localhost"), "they differ in the host");
    }, { path: "/oauth2/default" });
  },
);

Deno.test(
  "D1 metadata naming the issuer with a trailing slash → 'Issuer mismatch', exit 2, no browser",
  async () => {
    await withMockRun(async (mock) => {
      await assertMismatch(mock, `${mock.issuer}/`, "they differ by a trailing slash");
    }, { path: "/oauth2/default" });
  },
);

Deno.test(
  "D1 metadata naming the issuer with a case change in its path → 'Issuer mismatch', exit 2",
  async () => {
    await withMockRun(async (mock) => {
      await assertMismatch(mock, mock.issuer.replace("/oauth2/default", "/OAuth2/Default"), "they differ in the path");
    }, { path: "/oauth2/default" });
  },
);

Deno.test(
  "D1 metadata naming https instead of http, or an issuer with escape sequences → mismatch, sanitized",
  async () => {
    await withMockRun(async (mock) => {
      await assertMismatch(mock, mock.issuer.replace("http:", "https:"), "they differ in the scheme");
    }, { path: "/oauth2/default" });
    await withMockRun(async (mock) => {
      await assertMismatch(
        mock,
        `${mock.issuer}\x1b]0;owned\x07\x1b[2J/x`,
        "they differ in the path",
        `${mock.issuer}/x`,
      );
    }, { path: "/oauth2/default" });
  },
);

Deno.test(
  "D4 an authorization_endpoint on non-loopback http → refused before the browser, exit 1",
  async () => {
    await withMockRun(async (mock) => {
      mock.metadata.authorization_endpoint = "http://as.example/authorize";
      const result = await run(flags(mock));
      assertEquals(result.opened, []);
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        'error: The server\'s "authorization_endpoint" is not an https URL: "http://as.example/authorize"\n',
      );
    });
  },
);

Deno.test(
  "D4 a token_endpoint on non-loopback http → refused before the browser, exit 1",
  async () => {
    await withMockRun(async (mock) => {
      mock.metadata.token_endpoint = "http://as.example/token";
      const result = await run(flags(mock));
      assertEquals(result.opened, []);
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        'error: The server\'s "token_endpoint" is not an https URL: "http://as.example/token"\n',
      );
    });
  },
);

Deno.test(
  "D6 HTML (a captive portal) or an empty body where metadata JSON is expected → exit 1, no browser",
  async () => {
    for (
      const [body, type, got = type.split(";")[0]] of [
        ["<!doctype html><title>Wi-Fi login</title><form>…</form>", "text/html; charset=utf-8"],
        ["", "application/json", "a body that is not JSON"],
        ["", "text/plain"],
      ]
    ) {
      await withMockRun(async (mock) => {
        mock.intercept = (record) =>
          record.path.includes("/.well-known/") ? new Response(body, { headers: { "content-type": type } }) : undefined;
        const result = await run(flags(mock));
        assertEquals(result.opened, []);
        await assertFailed(
          result,
          mock,
          EXIT.failure,
          `error: Cannot fetch the server metadata: the server did not answer with JSON (got ${got})\n`,
        );
      });
    }
  },
);

Deno.test(
  "T HTML or an empty body from the token endpoint → exit 1, 'Sign-in failed' page, one token request",
  async () => {
    for (const [body, type] of [["<html><body>Service Unavailable</body></html>", "text/html"], ["", "text/plain"]]) {
      await withMockRun(async (mock) => {
        mock.intercept = (record) =>
          record.path === "/token" ? new Response(body, { headers: { "content-type": type } }) : undefined;
        const result = await run(flags(mock), { browser: scriptedBrowser });
        assertEquals(result.visit?.status, 400);
        assertStringIncludes(result.visit!.body, "Sign-in failed");
        assertEquals(mock.calls("token").length, 1);
        await assertFailed(
          result,
          mock,
          EXIT.failure,
          OPENING(mock, result.opened[0]) +
            `error: Cannot exchange the authorization code: the server did not answer with JSON (got ${type})\n`,
        );
      });
    }
  },
);

Deno.test(
  "D7 500 and 502 (HTML) from discovery → 'a server error', hint 'try again later', exit 1",
  async () => {
    for (const status of [500, 502]) {
      await withMockRun(async (mock) => {
        mock.intercept = (record) =>
          record.path.includes("/.well-known/")
            ? new Response("<h1>Bad gateway</h1>", { status, headers: { "content-type": "text/html" } })
            : undefined;
        const result = await run(flags(mock));
        assertEquals(result.opened, []);
        await assertFailed(
          result,
          mock,
          EXIT.failure,
          `error: Cannot fetch the server metadata: the server answered HTTP ${status}, a server error ` +
            `(GET ${mock.issuer}/.well-known/openid-configuration)\n` +
            "hint: try again later\n",
        );
      });
    }
  },
);

Deno.test(
  "T10 a 500 from the token endpoint → exit 1, no retry of the code (one token request)",
  async () => {
    await withMockRun(async (mock) => {
      mock.intercept = (record) =>
        record.path === "/token"
          ? new Response("<h1>Internal Server Error</h1>", { status: 500, headers: { "content-type": "text/html" } })
          : undefined;
      const result = await run(flags(mock), { browser: scriptedBrowser });
      assertEquals(mock.calls("token").length, 1);
      assertEquals(result.visit?.status, 400);
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        OPENING(mock, result.opened[0]) +
          "error: Cannot exchange the authorization code: the server answered HTTP 500, a server error\n" +
          "hint: try again later\n",
      );
    });
  },
);

Deno.test(
  "D9 an issuer that accepts and never answers → Ctrl-C ends it at once (exit 130); no 30 s wait",
  async () => {
    // HTTP_TIMEOUT_MS (30 s) is a module constant that no dep or flag can shorten, so the timeout
    // itself cannot be tested without waiting 30 s; Ctrl-C is the bound that can be asserted here.
    const silent = silentServer();
    try {
      const controller = new AbortController();
      silent.requested.then(() => controller.abort());
      const result = await run(["--issuer", silent.url, "--client-id", PUBLIC_CLIENT.id], { controller });
      assert(result.ms < 2_000, `the interrupted discovery took ${Math.round(result.ms)} ms`);
      assertEquals(result.opened, []);
      await assertFailed(result, undefined, EXIT.interrupted, "error: Interrupted\n");
    } finally {
      await silent.close();
    }
  },
);

Deno.test(
  "D6 a metadata body over 1 MiB (2 MiB at once; endless) → 'larger than 1 MiB', exit 1, bounded",
  async () => {
    for (const body of [() => `{"issuer":"${"x".repeat(2 * 1024 * 1024)}"}`, endlessBody]) {
      await withMockRun(async (mock) => {
        mock.intercept = (record) =>
          record.path.includes("/.well-known/")
            ? new Response(body(), { headers: { "content-type": "application/json" } })
            : undefined;
        const result = await run(flags(mock));
        assert(result.ms < 3_000, `reading the huge body took ${Math.round(result.ms)} ms`);
        assertEquals(result.opened, []);
        await assertFailed(
          result,
          mock,
          EXIT.failure,
          `error: The server at 127.0.0.1:${mock.port} sent a response larger than 1 MiB\n`,
        );
      });
    }
  },
);

Deno.test(
  "T an endless token response body → 'larger than 1 MiB', exit 1, the page says the sign-in failed",
  async () => {
    await withMockRun(async (mock) => {
      mock.intercept = (record) =>
        record.path === "/token"
          ? new Response(endlessBody(), { headers: { "content-type": "application/json" } })
          : undefined;
      const result = await run(flags(mock), { browser: scriptedBrowser });
      assertEquals(result.visit?.status, 400);
      assertStringIncludes(result.visit!.body, "Sign-in failed");
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        OPENING(mock, result.opened[0]) +
          `error: The server at 127.0.0.1:${mock.port} sent a response larger than 1 MiB\n`,
      );
    });
  },
);

Deno.test(
  "D redirects (301, 302, 307, 308) from discovery are not followed → exit 1; the target is never asked",
  async () => {
    for (const status of [301, 302, 307, 308]) {
      await withMockRun(async (mock) => {
        mock.intercept = (record) =>
          record.path.startsWith("/.well-known/")
            ? new Response(null, { status, headers: { location: `${mock.issuer}/elsewhere/.well-known/x` } })
            : undefined;
        const result = await run(flags(mock));
        assertEquals(mock.requests.filter((r) => r.path.startsWith("/elsewhere")), []);
        assertEquals(result.opened, []);
        await assertFailed(
          result,
          mock,
          EXIT.failure,
          `error: The server at 127.0.0.1:${mock.port} answered GET /.well-known/oauth-authorization-server with a redirect (HTTP ${status}), which is not followed\n` +
            "hint: check the issuer URL: it must be the exact issuer, not a page that redirects\n",
        );
      });
    }
  },
);

Deno.test(
  "T a 307 from the token endpoint is not followed → exit 1; the code is not re-posted anywhere",
  async () => {
    await withMockRun(async (mock) => {
      mock.intercept = (record) =>
        record.path === "/token"
          ? new Response(null, { status: 307, headers: { location: `${mock.issuer}/elsewhere/token` } })
          : undefined;
      const result = await run(flags(mock), { browser: scriptedBrowser });
      assertEquals(mock.requests.filter((r) => r.path.startsWith("/elsewhere")), []);
      assertEquals(mock.calls("token").length, 1);
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        OPENING(mock, result.opened[0]) +
          `error: The server at 127.0.0.1:${mock.port} answered POST /token with a redirect (HTTP 307), which is not followed\n` +
          "hint: check the issuer URL: it must be the exact issuer, not a page that redirects\n",
      );
    });
  },
);

Deno.test(
  "T1 a token response without access_token (or an empty one) → exit 1, nothing printed but the error",
  async () => {
    for (const body of [{ token_type: "Bearer", expires_in: 3600 }, { access_token: "", token_type: "Bearer" }]) {
      await withMockRun(async (mock) => {
        mock.intercept = (record) => record.path === "/token" ? json(body) : undefined;
        const result = await run(flags(mock, "--scope", "api:read"), { browser: scriptedBrowser });
        const why = body.access_token === "" ? "must not be empty" : "must be a string";
        await assertFailed(
          result,
          mock,
          EXIT.failure,
          OPENING(mock, result.opened[0]) +
            `error: Cannot exchange the authorization code: the server's answer is not valid ("response" body "access_token" property ${why})\n`,
        );
      });
    }
  },
);

Deno.test(
  'T2 a token response with token_type "mac" → exit 1; the (real) tokens it carried are not printed',
  async () => {
    await withMockRun(async (mock) => {
      const handedOut: string[] = [];
      // The issuer's genuine answer, with only its token_type changed on the way.
      const tampering: typeof fetch = async (input, init) => {
        const response = await fetch(input, init);
        if (!String(input instanceof Request ? input.url : input).endsWith("/token")) return response;
        const body = await response.json();
        handedOut.push(body.access_token, body.id_token);
        return json({ ...body, token_type: "mac" });
      };
      const result = await run(flags(mock), { browser: scriptedBrowser, fetch: tampering });
      assertEquals(handedOut.length, 2);
      assertNoLeaks(result, handedOut);
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        OPENING(mock, result.opened[0]) +
          "error: Cannot exchange the authorization code: unsupported `token_type` value\n",
      );
    });
  },
);

Deno.test(
  "L20 an authorization response whose iss differs (another server; a trailing slash) → exit 1, no exchange",
  async () => {
    for (const iss of ["https://evil.example", "{issuer}/"]) {
      await withMockRun(async (mock) => {
        const result = await run(flags(mock), {
          browser: async (start) => {
            const callback = await genuineCallback(start);
            callback.searchParams.set("iss", iss.replace("{issuer}", mock.issuer));
            return scriptedBrowser(callback.href);
          },
        });
        assertEquals(mock.calls("token").length, 0);
        assertEquals(result.visit?.status, 400);
        await assertFailed(
          result,
          mock,
          EXIT.failure,
          OPENING(mock, result.opened[0]) +
            'error: Cannot accept the sign-in: the server\'s answer is not valid (unexpected "iss" (issuer) response parameter value)\n',
        );
      });
    }
  },
);

Deno.test(
  "L21 an authorization response without iss while the metadata promises it → exit 1, no exchange",
  async () => {
    await withMockRun(async (mock) => {
      const result = await run(flags(mock), {
        browser: async (start) => {
          const callback = await genuineCallback(start);
          callback.searchParams.delete("iss");
          return scriptedBrowser(callback.href);
        },
      });
      assertEquals(mock.calls("token").length, 0);
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        OPENING(mock, result.opened[0]) +
          'error: Cannot accept the sign-in: the server\'s answer is not valid (response parameter "iss" (issuer) missing)\n',
      );
    });
  },
);

/** What must never reach a page: markup from the server, or any piece of an escape sequence. */
// deno-lint-ignore no-control-regex
const RAW_ESCAPES = /<script|\x1b|\x07|\x9b|\u202e|\]52;|\]8;/;

const HOSTILE_DESCRIPTION = "\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\" +
  " <script>alert(1)</script> \u202eevil\r\n\x9b31m";

Deno.test(
  "ANSI/OSC escapes in a denial's error_description → stripped on stderr, HTML-escaped on the page; exit 3",
  async () => {
    await withMockRun(async (mock) => {
      mock.intercept = (record) => {
        if (record.path !== "/authorize") return undefined;
        const target = new URL(record.query.redirect_uri);
        target.searchParams.set("error", "access_denied");
        target.searchParams.set("error_description", HOSTILE_DESCRIPTION);
        target.searchParams.set("state", record.query.state);
        target.searchParams.set("iss", mock.issuer);
        return new Response(null, { status: 302, headers: { location: target.href } });
      };
      const result = await run(flags(mock), { browser: scriptedBrowser });
      const page = result.visit!.body;
      assertEquals(result.visit?.status, 400);
      assertStringIncludes(page, "Sign-in cancelled");
      assertStringIncludes(page, "click &#60;script&#62;alert(1)&#60;/script&#62;");
      assert(!RAW_ESCAPES.test(page), "no markup nor escape reaches the page");
      assertEquals(mock.calls("token").length, 0);
      await assertFailed(
        result,
        mock,
        EXIT.denied,
        OPENING(mock, result.opened[0]) +
          'error: Sign-in was declined: the server answered "access_denied" (click <script>alert(1)</script>  evil  )\n' +
          "hint: run the login again and approve the request in the browser\n",
      );
    });
  },
);

Deno.test(
  "ANSI/OSC escapes in the token endpoint's error_description → stripped on stderr and the page; exit 1",
  async () => {
    await withMockRun(async (mock) => {
      mock.intercept = (record) =>
        record.path === "/token"
          ? json({ error: "invalid_grant", error_description: HOSTILE_DESCRIPTION }, 400)
          : undefined;
      const result = await run(flags(mock), { browser: scriptedBrowser });
      assertEquals(result.visit?.status, 400);
      assert(
        !RAW_ESCAPES.test(result.visit!.body),
        "no markup nor escape on the page",
      );
      await assertFailed(
        result,
        mock,
        EXIT.failure,
        OPENING(mock, result.opened[0]) +
          'error: Cannot exchange the authorization code: the server answered "invalid_grant" (click <script>alert(1)</script>  evil  )\n' +
          "hint: the code or token was rejected: run the login again\n",
      );
    });
  },
);

// ── 2.4 The environment ─────────────────────────────────────────────────────────────────────────

Deno.test(
  "E1 a fixed --port already in use → exit 2 naming the port; no contact with the other listener",
  async () => {
    await withMockRun(async (mock) => {
      const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (busy.addr as Deno.NetAddr).port;
      let contacted = false;
      const accepting = busy.accept().then((conn) => {
        contacted = true;
        conn.close();
      }, () => {});
      let result: Run;
      try {
        result = await run([...flags(mock), "--port", String(port)]);
      } finally {
        busy.close();
        await accepting;
      }
      assertEquals(contacted, false, "the tool did not connect to the other program");
      assertEquals(result.opened, []);
      assertEquals(mock.calls("authorize").length, 0);
      await assertFailed(
        result,
        mock,
        EXIT.usage,
        `error: Port ${port} is already in use by another program\n` +
          "hint: stop that program, or register another redirect URI and pass it with --redirect-uri or --port\n",
      );
    });
  },
);

Deno.test(
  "E1 a localhost redirect whose port is taken on ::1 only → exit 2; the 127.0.0.1 half is freed",
  async () => {
    await withMockRun(async (mock) => {
      const busy = Deno.listen({ hostname: "::1", port: 0 });
      const port = (busy.addr as Deno.NetAddr).port;
      let result: Run;
      try {
        result = await run([...flags(mock), "--redirect-uri", `http://localhost:${port}/authorization-code/callback`]);
        await assertPortClosed(port, "127.0.0.1");
      } finally {
        busy.close();
      }
      assertEquals(result.opened, []);
      await assertFailed(
        result,
        mock,
        EXIT.usage,
        `error: Port ${port} is already in use by another program\n` +
          "hint: stop that program, or register another redirect URI and pass it with --redirect-uri or --port\n",
      );
    });
  },
);

Deno.test({
  name: "O an opener that never returns → the login completes when the person opens the address themself",
  fn: async () => {
    await withMockRun(async (mock) => {
      const opener = gate();
      let visit: Promise<unknown> | undefined;
      let start = "";
      try {
        const result = await run(flags(mock), {
          openUrl: (url) => {
            start = url;
            visit = scriptedBrowser(url); // the person copies the printed address into a browser
            return opener.wait; // …while the opener itself hangs
          },
          onOverrun: opener.open,
        });
        await visit;
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertEquals(result.stderr, cleanLoginStderr(start, `127.0.0.1:${mock.port}`));
        assertEquals(mock.calls("token").length, 1);
        await cleanUp(result);
      } finally {
        opener.open();
        await visit?.catch(() => {});
      }
    });
  },
});

Deno.test(
  "E5 Ctrl-C during discovery (headers in, body stalled) → exit 130 'Interrupted' at once; nothing saved",
  async () => {
    // The metadata's headers arrive and its body stalls after one byte: Ctrl-C must also end the body read.
    const silent = silentServer(
      "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{",
    );
    try {
      const controller = new AbortController();
      let headersIn = false;
      // Ctrl-C the moment the headers are in, before the tool reads the stalled body.
      const pressCtrlC: typeof fetch = async (input, init) => {
        const response = await fetch(input, init);
        headersIn = true;
        controller.abort();
        return response;
      };
      const result = await run(["--issuer", `${silent.url}/oauth2/default`, "--client-id", PUBLIC_CLIENT.id], {
        controller,
        fetch: pressCtrlC,
      });
      assert(headersIn, "the headers arrived before Ctrl-C");
      assert(result.ms < 2_000, `the interrupted discovery took ${Math.round(result.ms)} ms`);
      assertEquals(result.opened, []);
      await assertFailed(result, undefined, EXIT.interrupted, "error: Interrupted\n");
    } finally {
      await silent.close();
    }
  },
);

Deno.test(
  "E5 Ctrl-C while waiting for the browser → exit 130 'Login cancelled', port closed, a later callback is void",
  async () => {
    await withMockRun(async (mock) => {
      const controller = new AbortController();
      let callback: URL | undefined;
      const result = await run(flags(mock), {
        controller,
        browser: async (start) => {
          callback = await genuineCallback(start); // the person is at the sign-in page…
          controller.abort(); // …and presses Ctrl-C in the terminal
          return undefined;
        },
      });
      assert(result.ms < 2_000, `the interrupted login took ${Math.round(result.ms)} ms`);
      await assertPortClosed(portOf(result.opened[0]));
      const late = await hit(callback!).catch(() => "refused");
      assertEquals(late, "refused", "the callback server is gone");
      assertEquals(mock.calls("token").length, 0);
      await assertFailed(
        result,
        mock,
        EXIT.interrupted,
        OPENING(mock, result.opened[0]) + "error: Login cancelled\n",
      );
    });
  },
);

Deno.test(
  "E6 Ctrl-C during the code exchange → exit 130 'Login cancelled', port closed, the old cache entry intact",
  async () => {
    await withMockRun(async (mock) => {
      const before = await run(flags(mock), { browser: scriptedBrowser });
      assertEquals(before.code, EXIT.ok, before.stderr);
      const [entry] = await filesUnder(before.home);
      const saved = await Deno.readFile(`${before.home}/${entry}`);

      const controller = new AbortController();
      const tokenRequested = signal();
      const held = gate();
      mock.intercept = async (record) => {
        if (record.path !== "/token") return undefined;
        tokenRequested.resolve();
        await held.wait; // the token endpoint is slow; the person gives up
        return json({ error: "temporarily_unavailable" }, 503);
      };
      tokenRequested.promise.then(() => controller.abort());
      let result: Run;
      try {
        result = await run(flags(mock), { controller, browser: scriptedBrowser, home: before.home });
      } finally {
        held.open();
      }
      try {
        assert(result.ms < 3_000, `the interrupted exchange took ${Math.round(result.ms)} ms`);
        await assertPortClosed(portOf(result.opened[0]));
        assertEquals(result.visit?.status, 400);
        assertStringIncludes(result.visit!.body, "Sign-in failed");
        assertEquals(result.code, EXIT.interrupted);
        assertEquals(result.stderr, OPENING(mock, result.opened[0]) + "error: Login cancelled\n");
        assertEquals(result.stdout, "");
        assertNoLeaks(result, secretsOf(mock));
        assertEquals(await filesUnder(result.home), [entry], "no temporary or lock file is left");
        assertEquals(await Deno.readFile(`${result.home}/${entry}`), saved, "the previous entry is byte-identical");
      } finally {
        await cleanUp(result);
      }
    });
  },
);

Deno.test({
  name: "E5 Ctrl-C while the opener hangs → exit 130 'Login cancelled' at once",
  fn: async () => {
    await withMockRun(async (mock) => {
      const controller = new AbortController();
      const opener = gate();
      let start = "";
      try {
        const result = await run(flags(mock), {
          controller,
          openUrl: (url) => {
            start = url;
            queueMicrotask(() => controller.abort()); // the person gives up while the opener hangs
            return opener.wait;
          },
          onOverrun: opener.open,
          boundMs: 2_000,
        });
        await assertPortClosed(portOf(start));
        await assertFailed(result, mock, EXIT.interrupted, OPENING(mock, start) + "error: Login cancelled\n");
      } finally {
        opener.open();
      }
    });
  },
});

/** Makes `<home>/blocker` a regular file, so nothing can be created beneath it. */
function blocker(home: string): string {
  Deno.writeTextFileSync(`${home}/blocker`, "");
  return `${home}/blocker`;
}

/** Whether this process can write into a 0500 directory (root can): then that variant proves nothing. */
function writesIgnorePermissions(): boolean {
  const dir = Deno.makeTempDirSync({ prefix: "oauth-login-hostile-probe-" });
  try {
    Deno.chmodSync(dir, 0o500);
    Deno.writeTextFileSync(`${dir}/probe`, "");
    return true;
  } catch {
    return false;
  } finally {
    Deno.chmodSync(dir, 0o700);
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test(
  "E8 an unwritable cache directory → 'Cannot save the tokens' before the browser opens, exit 1; nothing asked of the server",
  async () => {
    const variants: [string, (home: string) => string, RegExp][] = [
      ["its parent is a file", (home) => `${blocker(home)}/cache`, /^Not a directory \(os error 20\)/],
      ["it is a file", (home) => blocker(home), /^(File exists \(os error 17\)|Not a directory \(os error 20\))/],
    ];
    // As root (as in this sandbox) a 0500 directory is writable, so that variant runs only without privileges.
    if (!writesIgnorePermissions()) {
      variants.push(["it is read-only (0500)", (home) => {
        Deno.mkdirSync(`${home}/readonly`, { mode: 0o500 });
        Deno.chmodSync(`${home}/readonly`, 0o500);
        return `${home}/readonly`;
      }, /^permission denied$/]);
    }
    for (const [what, dirOf, reason] of variants) {
      await withMockRun(async (mock) => {
        let dir = "";
        const result = await run(flags(mock, "--json"), {
          browser: scriptedBrowser,
          storage: (home) => fileStorage(dir = dirOf(home)),
        });
        try {
          assertEquals(result.code, EXIT.failure, `${what}: ${result.stderr}`);
          // Checked before the sign-in: a login whose tokens cannot be kept is not started.
          assertEquals(mock.requests.length, 0, `${what}: nothing was asked of the server`);
          assertEquals(result.opened, [], `${what}: no browser was opened`);
          const lines = result.stderr.split("\n");
          const said = lines[0].match(/^error: Cannot save the tokens in "(.*)": (.*)$/);
          assert(said, `${what}: ${lines[0]}`);
          assertEquals(said[1], dir, what);
          assertMatch(said[2], reason, what);
          assertEquals(lines.slice(1), [
            "hint: check that you own that directory, or point OAUTH_LOGIN_CACHE at another one",
            "",
          ]);
          assertEquals(result.stdout, "", `${what}: --json prints no token when they could not be saved`);
          assertNoLeaks(result, secretsOf(mock));
          const left = (await filesUnder(result.home)).filter((f) => f !== "blocker");
          assertEquals(left, [], `${what}: no temporary file is left`);
        } finally {
          if (what.includes("read-only")) await Deno.chmod(`${result.home}/readonly`, 0o700);
          await cleanUp(result);
        }
      });
    }
  },
);

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────

/** `withMock`, with each run bounded as a whole too (a mock that will not close fails the case). */
async function withMockRun(
  fn: (mock: ServedMock) => Promise<void>,
  options: { path?: string } = {},
): Promise<void> {
  await within(withMock(fn, options), 3 * BOUND_MS, "the case");
}
