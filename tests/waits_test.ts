/**
 * Issue 13: no silent waits. A rejected sign-in request ends the login at once (pushed authorization
 * requests where offered, else a preflight of the authorization URL); waiting is visible and bounded
 * on injected timers; paste-back shows an address that works elsewhere; messages name the real cause
 * (DNS, refused, TLS), suggest what the command accepts, and fit the terminal.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";
import { EXIT, realDeps, testing } from "../login.ts";
const { closest, wrap } = testing;
import { CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import {
  assertNoLeaks,
  cleanUp,
  fakeClock,
  grantOnlyOnce,
  keyboard,
  run,
  scriptedBrowser,
  secretsOf,
  withMock,
} from "./_harness.ts";

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

/** A timer that never waits: each wait's clock runs out at once, so a 5-minute timeout takes no time. */
const instantTimer = () => Promise.resolve();

// ── 1. A rejected authorization request ends the login at once ──────────────────────────────────

const OTHER_REDIRECT_CLIENT = { ...PUBLIC_CLIENT, id: "cli-elsewhere", redirectUris: ["http://127.0.0.1/elsewhere"] };

for (const par of [false, true]) {
  const how = par ? "with PAR" : "without PAR (the preflight)";
  Deno.test(`login ${how}: a wrong client id ends within seconds, exit 2, with the server's words`, async () => {
    await withMock(async (mock) => {
      const result = await run(["--issuer", mock.issuer, "--client-id", "no-such-client"], {
        browser: scriptedBrowser,
        boundMs: 3_000,
      });
      assertEquals(result.code, EXIT.usage, result.stderr);
      assert(result.ms < 3_000, `took ${result.ms} ms`);
      assertEquals(result.opened, [], "no browser opens for a request the server rejected");
      assertEquals(mock.calls("token").length, 0);
      if (par) {
        assertEquals(mock.calls("par").length, 1);
        assertEquals(mock.calls("authorize").length, 0, "the browser's URL was never needed");
        assertStringIncludes(
          result.stderr,
          'error: The server rejected the sign-in request: it answered "invalid_client" (Client authentication failed)\n',
        );
      } else {
        assertEquals(mock.preflights().length, 1, "one preflight request");
        assertEquals(mock.calls("authorize").length, 0, "and no browser");
        assertStringIncludes(
          result.stderr,
          "error: The server rejected the sign-in request (HTTP 400): Sign-in failed: Unknown client: the client_id is not registered.\n",
        );
      }
      assertMatch(
        result.stderr,
        par
          // invalid_client from an endpoint that authenticates the client: not the redirect URI's fault.
          ? /hint: check that the client id "no-such-client" exists at the server; no client secret was sent \(client authentication "none"\), so if the client is confidential, set OAUTH_CLIENT_SECRET to its secret\n/
          : /hint: check that the client id "no-such-client" exists at the server and has this redirect URI registered \(a loopback one may need any port allowed\): http:\/\/127\.0\.0\.1:\d+\/callback\n/,
      );
      await cleanUp(result);
    }, { par });
  });

  Deno.test(`login ${how}: an unregistered redirect URI ends within seconds, exit 2, with the server's words`, async () => {
    await withMock(async (mock) => {
      const result = await run(["--issuer", mock.issuer, "--client-id", OTHER_REDIRECT_CLIENT.id], {
        browser: scriptedBrowser,
        boundMs: 3_000,
      });
      assertEquals(result.code, EXIT.usage, result.stderr);
      assertEquals(result.opened, []);
      assertStringIncludes(
        result.stderr,
        par
          ? 'error: The server rejected the sign-in request: it answered "invalid_redirect_uri" (The redirect_uri is not registered for this client)\n'
          : "error: The server rejected the sign-in request (HTTP 400): Sign-in failed: The redirect_uri is not registered for this client.\n",
      );
      assertStringIncludes(result.stderr, `the client id "${OTHER_REDIRECT_CLIENT.id}"`);
      await cleanUp(result);
    }, { par, clients: [PUBLIC_CLIENT, OTHER_REDIRECT_CLIENT] });
  });
}

Deno.test("login with PAR: the browser gets a short URL with request_uri; the exchange completes", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock), { browser: scriptedBrowser });
    assertEquals(result.code, EXIT.ok, result.stderr);
    const [pushed] = mock.calls("par");
    assertEquals(pushed.form.client_id, PUBLIC_CLIENT.id);
    assertEquals(pushed.form.code_challenge_method, "S256");
    assertMatch(pushed.form.redirect_uri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    const [authorize] = mock.calls("authorize");
    assertEquals(Object.keys(authorize.query).sort(), ["client_id", "request_uri"], "nothing else in the URL");
    assertEquals(mock.calls("token").length, 1);
    assertNoLeaks(result, secretsOf(mock));
    await cleanUp(result);
  }, { par: true });
});

Deno.test("login --no-par sends the full URL (checked by the preflight); a server that requires PAR still gets it", async (t) => {
  await t.step("--no-par where PAR is offered", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock, "--no-par"), { browser: scriptedBrowser });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("par").length, 0);
      assertEquals(mock.preflights().length, 1, "the preflight");
      assertEquals(mock.preflights()[0].query.client_id, PUBLIC_CLIENT.id);
      assertEquals(mock.calls("authorize").length, 1, "and the browser");
      await cleanUp(result);
    }, { par: true });
  });
  await t.step("--no-par where PAR is required", async () => {
    await withMock(async (mock) => {
      const result = await run(flags(mock, "--no-par"), { browser: scriptedBrowser });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertEquals(mock.calls("par").length, 1);
      await cleanUp(result);
    }, { par: "required" });
  });
});

Deno.test("login with PAR: an unknown scope is invalid_scope, exit 2", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock, "--scope", "openid bogus"), { browser: scriptedBrowser });
    assertEquals(result.code, EXIT.usage, result.stderr);
    assertStringIncludes(result.stderr, '"invalid_scope" (The scope "bogus" is not known)');
    await cleanUp(result);
  }, { par: true });
});

Deno.test("the preflight ignores what cannot tell (403, 500, a login page); a 403 shows what was sent", async (t) => {
  for (const status of [403, 500, 429]) {
    await t.step(`HTTP ${status}`, async () => {
      await withMock(async (mock) => {
        let first = true;
        mock.intercept = (record) => {
          if (record.path !== "/authorize" || !first) return undefined;
          first = false;
          return new Response("<h1>Checking your browser</h1>", { status, headers: { "content-type": "text/html" } });
        };
        const result = await run(flags(mock), { browser: scriptedBrowser });
        assertEquals(result.code, EXIT.ok, result.stderr);
        assertMatch(
          result.stderr,
          /note: The server's answer cannot tell whether it accepts this client; if the browser shows an error, check the client id "cli-public" and the redirect URI http:\/\/127\.0\.0\.1:\d+\/callback\n/,
        );
        await cleanUp(result);
      });
    });
  }
});

Deno.test("the browser timeout names the client id and redirect URI only when the server could not say it accepts them", async (t) => {
  await t.step("unchecked (the preflight got a 500): the usual causes", async () => {
    await withMock(async (mock) => {
      mock.intercept = (record) =>
        record.path === "/authorize"
          ? new Response("busy", { status: 500, headers: { "content-type": "text/plain" } })
          : undefined;
      const result = await run(flags(mock), { timer: instantTimer });
      assertEquals(result.code, EXIT.timedOut, result.stderr);
      assertStringIncludes(result.stderr, "error: No answer from the browser within 5 minutes\n");
      // The login to run again is this one, with the settings given as flags.
      assertStringIncludes(result.stderr, `hint: run the login again ("oauth-login login --issuer ${mock.issuer}`);
      assertMatch(
        result.stderr,
        /A sign-in that never comes back is most often a wrong client id \("cli-public"\) or a redirect URI the server does not accept \(http:\/\/127\.0\.0\.1:\d+\/callback\): check both\n/,
      );
      await cleanUp(result);
    });
  });
  for (const par of [false, true]) {
    await t.step(`accepted by ${par ? "PAR" : "the preflight"}: not blamed`, async () => {
      await withMock(async (mock) => {
        const result = await run(flags(mock), { timer: instantTimer });
        assertEquals(result.code, EXIT.timedOut, result.stderr);
        assertStringIncludes(
          result.stderr,
          `hint: run the login again ("oauth-login login --issuer ${mock.issuer} --client-id cli-public") and finish it in the browser, or give more time with --timeout SECONDS; the server accepted the client id and the redirect URI, so neither is the cause\n`,
        );
        await cleanUp(result);
      }, { par });
    });
  }
});

Deno.test("doctor reports the client id and redirect URI as ok or fail, with and without PAR", async (t) => {
  for (const par of [false, true]) {
    await t.step(par ? "PAR" : "preflight", async () => {
      await withMock(async (mock) => {
        const good = await run(["doctor", ...flags(mock)]);
        assertMatch(
          good.stdout,
          /^ok {4}client {5}the server accepts the client id "cli-public" and the redirect URI http:\/\/127\.0\.0\.1:49152\/callback/m,
        );
        assertStringIncludes(good.stdout, 'ok    client     client id "cli-public": known to the server\n');
        assertStringIncludes(good.stdout, "ok    client     redirect URI http://127.0.0.1:49152/callback: accepted\n");
        const elsewhere = await run(["doctor", "--issuer", mock.issuer, "--client-id", OTHER_REDIRECT_CLIENT.id]);
        assertEquals(elsewhere.code, EXIT.failure);
        assertStringIncludes(elsewhere.stdout, 'ok    client     client id "cli-elsewhere": known to the server\n');
        assertStringIncludes(
          elsewhere.stdout,
          "fail  client     redirect URI http://127.0.0.1:49152/callback: not registered for this client\n",
        );
        await cleanUp(elsewhere);
        const bad = await run(["doctor", "--issuer", mock.issuer, "--client-id", "no-such-client"]);
        assertEquals(bad.code, EXIT.failure);
        assertStringIncludes(bad.stdout, 'fail  client     client id "no-such-client": rejected\n');
        assertMatch(
          bad.stdout,
          /^fail {2}client {5}the client id "no-such-client" and the redirect URI .*: The server rejected the sign-in request/m,
        );
        await cleanUp(good);
        await cleanUp(bad);
      }, { par, clients: [PUBLIC_CLIENT, OTHER_REDIRECT_CLIENT] });
    });
  }
});

// ── 2. Waiting is visible, and bounded ───────────────────────────────────────────────────────────

Deno.test("the browser wait shows a countdown on a terminal, updated in place, on injected timers", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock, "--timeout", "3"), { timer: instantTimer, animate: true });
    assertEquals(result.code, EXIT.timedOut, result.stderr);
    assert(result.ms < 2_000, `no real waiting: ${result.ms} ms`);
    // deno-lint-ignore no-control-regex
    const shown = result.stderr.match(/\r\x1b\[2KWaiting for the browser: \d:\d\d left \(Ctrl-C cancels\)/g);
    assertEquals(shown?.map((s) => s.match(/\d:\d\d/)![0]), ["0:03", "0:02", "0:01", "0:00"]);
    assertStringIncludes(result.stderr, "0:00 left (Ctrl-C cancels)\r\x1b[2Kerror: No answer", "the line is cleared");
    await cleanUp(result);
  });
});

Deno.test("without a terminal (or with NO_COLOR) the browser wait is one static line", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock, "--timeout", "90"), { timer: instantTimer, animate: false });
    assertEquals(result.code, EXIT.timedOut);
    assertStringIncludes(result.stderr, "\nWaiting for the browser for up to 90 seconds (Ctrl-C cancels)\nerror:");
    assert(!result.stderr.includes("\r"), "nothing is redrawn");
    await cleanUp(result);
  });
});

Deno.test("with paste-back on a terminal, the countdown stays above a visible prompt", async () => {
  await withMock(async (mock) => {
    const keys = keyboard();
    const result = await run(flags(mock, "--timeout", "2"), {
      timer: instantTimer,
      animate: true,
      lines: keys.lines,
      openUrl: () => Promise.resolve(),
      env: { SSH_CONNECTION: "10.0.0.1 50000 10.0.0.2 22", BROWSER: "lynx" }, // the browser may be elsewhere
    });
    keys.end();
    assertEquals(result.code, EXIT.timedOut);
    assertStringIncludes(
      result.stderr,
      "Waiting for the browser: 0:02 left (Ctrl-C cancels)\nPaste the address here: ",
    );
    assertStringIncludes(
      result.stderr,
      "\x1b7\x1b[1A\r\x1b[2KWaiting for the browser: 0:01 left (Ctrl-C cancels)\x1b8",
    );
    await cleanUp(result);
  });
});

Deno.test("Ctrl-C during the browser wait ends it at once with 130", async () => {
  await withMock(async (mock) => {
    const controller = new AbortController();
    const result = await run(flags(mock), {
      controller,
      openUrl: () => {
        queueMicrotask(() => controller.abort());
        return Promise.resolve();
      },
      timer: (_ms, signal) => new Promise((resolve) => signal.addEventListener("abort", () => resolve())),
    });
    assertEquals(result.code, EXIT.interrupted, result.stderr);
    assertStringIncludes(result.stderr, "error: Login cancelled\n");
    await cleanUp(result);
  });
});

Deno.test("--timeout ends a device flow (min(--timeout, expires_in)), exit 5", async () => {
  await withMock(async (mock) => {
    mock.device.pending = 1000;
    const clock = fakeClock(Date.UTC(2026, 0, 1));
    const result = await run(flags(mock, "--flow", "device", "--timeout", "12"), clock);
    assertEquals(result.code, EXIT.timedOut, result.stderr);
    assertStringIncludes(result.stderr, "Waiting for you to approve, for up to 12 seconds (Ctrl-C cancels)\n");
    assertStringIncludes(result.stderr, "error: The sign-in was not approved within 12 seconds (--timeout)\n");
    assertEquals(mock.calls("token").length, 2, "polls at 5 s and 10 s, none after 12 s");
    await cleanUp(result);
  });
});

Deno.test("the device flow's countdown on a terminal, and its static line with NO_COLOR", async (t) => {
  await t.step("terminal", async () => {
    await withMock(async (mock) => {
      mock.device.pending = 1;
      const clock = fakeClock(Date.UTC(2026, 0, 1));
      const result = await run(flags(mock, "--flow", "device"), { ...clock, animate: true });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(result.stderr, "\r\x1b[2KWaiting for you to approve: 10:00 left (Ctrl-C cancels)");
      assertStringIncludes(result.stderr, "\r\x1b[2KWaiting for you to approve: 9:51 left (Ctrl-C cancels)");
      await cleanUp(result);
    });
  });
  await t.step("NO_COLOR (animate is off)", async () => {
    await withMock(async (mock) => {
      const clock = fakeClock(Date.UTC(2026, 0, 1));
      const result = await run(flags(mock, "--flow", "device"), { ...clock, animate: false, env: { NO_COLOR: "1" } });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(result.stderr, "Waiting for you to approve, for up to 10 minutes (Ctrl-C cancels)\n");
      await cleanUp(result);
    });
  });
});

Deno.test("token says why before it starts a sign-in", async () => {
  await withMock(async (mock) => {
    const result = await run(["token", ...flags(mock)], { browser: scriptedBrowser, interactive: true });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assert(
      result.stderr.startsWith(`No cached token for ${mock.issuer}: signing in\nOpening your browser`),
      result.stderr,
    );
    await cleanUp(result);
  });
});

// ── 3. Paste-back from another machine ───────────────────────────────────────────────────────────

for (const par of [false, true]) {
  Deno.test(`paste-back ${par ? "with PAR" : "without PAR"}: the offer shows an address that works elsewhere`, async () => {
    await withMock(async (mock) => {
      const keys = keyboard();
      let offered: string | undefined;
      let pasted: Promise<void> | undefined;
      const result = await run(flags(mock), {
        lines: keys.lines,
        openUrl: () => Promise.resolve(), // the browser here shows nothing: the person uses another machine
        env: { SSH_CONNECTION: "10.0.0.1 50000 10.0.0.2 22", BROWSER: "firefox" }, // over SSH, with a forwarded browser
        onStderr: (text: string) => {
          const match = text.match(/open this address there instead:\n\n(\S+)\n/);
          if (!match || pasted) return;
          offered = match[1];
          // The other machine's browser: the authorization server answers with the redirect to the
          // loopback callback, which does not load there; the person pastes that address.
          pasted = (async () => {
            const response = await fetch(offered!, { redirect: "manual" });
            await response.body?.cancel();
            keys.type(response.headers.get("location")!);
            keys.end();
          })();
        },
      });
      await pasted;
      assertEquals(result.code, EXIT.ok, result.stderr);
      assert(offered, "an address was offered");
      assert(offered.startsWith(`${mock.issuer}/authorize?`), "the authorization server's address, not the loopback");
      // Where the server allows it, the whole request is in the address, which never expires (a pushed one would).
      assertEquals(new URL(offered).searchParams.get("code_challenge_method"), "S256");
      assertEquals(mock.calls("par").length, par ? 1 : 0, "the loopback address still uses PAR");
      assertStringIncludes(result.stderr, "paste its address here and press Enter.\n");
      assertStringIncludes(result.stderr, "Paste the address here: ");
      assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
      await cleanUp(result);
    }, { par });
  });
}

// ── 4. Messages that name the cause and an action that works ────────────────────────────────────

Deno.test("network errors say which URL and why: DNS, a refused connection, TLS (with the CA setting)", async (t) => {
  await t.step("DNS", async () => {
    const result = await run(["--issuer", "https://no-such-host.invalid", "--client-id", "x"], { boundMs: 20_000 });
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(
      result.stderr,
      "error: Cannot reach no-such-host.invalid: the name did not resolve (DNS lookup failed) (GET https://no-such-host.invalid/.well-known/oauth-authorization-server)\n",
    );
    assertStringIncludes(result.stderr, 'the host name "no-such-host.invalid"');
    await cleanUp(result);
  });
  await t.step("refused", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const result = await run(["--issuer", `http://127.0.0.1:${port}`, "--client-id", "x", "--verbose"]);
    assertEquals(result.code, EXIT.failure);
    assertStringIncludes(
      result.stderr,
      `error: Cannot reach 127.0.0.1:${port}: the connection was refused (nothing listens on that port) (GET http://127.0.0.1:${port}/.well-known/oauth-authorization-server)\n`,
    );
    assertMatch(
      result.stderr,
      /\ncause: Error: error sending request for url .*Connection refused/,
      "--verbose: the chain",
    );
    await cleanUp(result);
  });
  await t.step("TLS", async () => {
    // A certificate the tool does not trust (self-signed): the hint is about CAs. (A server on this
    // machine that does not speak TLS at all gets the http:// hint instead: tests/firsthour_test.ts.)
    const fixtures = new URL("./fixtures/", import.meta.url);
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      cert: Deno.readTextFileSync(new URL("loopback-cert.pem", fixtures)),
      key: Deno.readTextFileSync(new URL("loopback-key.pem", fixtures)),
    }, () => new Response("{}"));
    const port = server.addr.port;
    try {
      const result = await run(["--issuer", `https://127.0.0.1:${port}`, "--client-id", "x"], {
        env: { DENO_CERT: "/etc/corp-ca.pem" },
      });
      assertEquals(result.code, EXIT.failure);
      assertMatch(
        result.stderr,
        new RegExp(`error: Cannot reach 127\\.0\\.0\\.1:${port}: TLS failed \\(.+\\) \\(GET https://`),
      );
      assertStringIncludes(result.stderr, "the certificates trusted were DENO_CERT=/etc/corp-ca.pem");
      assert(!result.stderr.includes("cause:"), "the chain only with --verbose");
      await cleanUp(result);
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("did you mean …? for a misspelt command and a misspelt flag", async () => {
  const command = await run(["logn"]);
  assertEquals(command.code, EXIT.usage);
  assertStringIncludes(command.stderr, 'error: Unknown command "logn": did you mean "login"?\n');
  const flag = await run(["--isuer", "https://a.example"]);
  assertEquals(flag.code, EXIT.usage);
  assertStringIncludes(flag.stderr, 'error: Unknown flag "--isuer": did you mean "--issuer"?\n');
  const far = await run(["frobnicate"]);
  assertEquals(far.stderr, 'error: Unknown command "frobnicate"\nhint: run with --help to see the commands\n');
  assertEquals(closest("whoaim", ["login", "whoami"]), "whoami");
  for (const result of [command, flag, far]) await cleanUp(result);
});

Deno.test("whoami while logged out: no flag it rejects in the hint; --json says so; exit 4 stays", async () => {
  const text = await run(["whoami", "--issuer", "https://a.example", "--client-id", "x"]);
  assertEquals(text.code, EXIT.loginRequired);
  assertEquals(
    text.stderr,
    'error: Not logged in for https://a.example\nhint: run "oauth-login login --issuer https://a.example --client-id x"\n',
  );
  const json = await run(["whoami", "--json", "--issuer", "https://a.example", "--client-id", "x"]);
  assertEquals(json.code, EXIT.loginRequired);
  assertEquals(JSON.parse(json.stdout), {
    logged_in: false,
    issuer: "https://a.example",
    client_id: "x",
    reason: "Not logged in",
  });
  for (const result of [text, json]) await cleanUp(result);
});

Deno.test("hints name the command as the person runs the tool", async (t) => {
  for (
    const [invokedAs, expected] of [
      // The settings given as flags come along: without them the suggested login would find no issuer.
      [
        "deno task",
        'hint: run "deno task login --issuer https://a.example --client-id x" (or pass --interactive to let this command sign you in)',
      ],
      ["deno run -A login.ts", 'hint: run "deno run -A login.ts login --issuer https://a.example --client-id x" (or'],
      [undefined, 'hint: run "oauth-login login --issuer https://a.example --client-id x" (or pass --interactive'],
    ] as const
  ) {
    await t.step(invokedAs ?? "the binary", async () => {
      const result = await run(["token", "--issuer", "https://a.example", "--client-id", "x"], { invokedAs });
      assertEquals(result.code, EXIT.loginRequired);
      assertStringIncludes(result.stderr, expected);
      await cleanUp(result);
    });
  }
});

// ── 5. Output that fits ─────────────────────────────────────────────────────────────────────────

Deno.test("--help of every command fits 80 columns", async () => {
  const commands = [[], ["login"], ["token"], ["whoami"], ["status"], ["logout"], ["doctor"], ["profiles"], ["fetch"]];
  for (const command of [...commands, ["exec"]]) {
    const result = await run([...command, "--help"]);
    assertEquals(result.code, EXIT.ok);
    const wide = result.stdout.split("\n").filter((line) => line.length > 80);
    assertEquals(wide, [], `${command[0] ?? "oauth-login"} --help`);
    await cleanUp(result);
  }
});

Deno.test("prose on stderr wraps at word boundaries to the terminal's width; long URLs stand alone", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const result = await run([
    "--issuer",
    `http://127.0.0.1:${port}/a/rather/long/issuer/path/for/wrapping`,
    "--client-id",
    "x",
  ], {
    columns: 60,
  });
  assertEquals(result.code, EXIT.failure);
  const lines = result.stderr.trimEnd().split("\n");
  assert(lines.length > 2, result.stderr);
  for (const line of lines) {
    assert(line.length <= 60 || /^\s*\S*https?:\/\/\S+$/.test(line), `too wide and not a lone URL: "${line}"`);
  }
  assertMatch(
    result.stderr,
    /\n {7}http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-authorization-server\/a\/rather\S*\n/,
  );
  assertEquals(wrap("error: one two three", 12), "error: one\n       two\n       three");
  await cleanUp(result);
});

// ── 6. Pages ────────────────────────────────────────────────────────────────────────────────────

Deno.test("the success page names the provider and who signed in; the error page carries the terminal's hint", async () => {
  await withMock(async (mock) => {
    const ok = await run(flags(mock), { browser: scriptedBrowser });
    assertEquals(ok.code, EXIT.ok);
    assertStringIncludes(ok.visit!.body, "<p>Signed in as alice@example.com — you can close this tab");
    assertStringIncludes(ok.visit!.body, `<p class="detail">Provider: 127.0.0.1:${mock.port}</p>`);
    await cleanUp(ok);
    mock.intercept = (record) =>
      record.path === "/token"
        ? new Response(JSON.stringify({ error: "invalid_grant", error_description: "Code expired" }), {
          status: 400,
          headers: { "content-type": "application/json" },
        })
        : undefined;
    const failed = await run(flags(mock), { browser: scriptedBrowser });
    assertEquals(failed.code, EXIT.failure);
    assertStringIncludes(failed.stderr, "hint: the code or token was rejected: run the login again\n");
    assertStringIncludes(failed.visit!.body, "Next: the code or token was rejected: run the login again.");
    await cleanUp(failed);
  });
});

Deno.test("logout --all words each entry's outcome and blames the server only for what it answered", async () => {
  await withMock(async (mock) => {
    await withMock(async (bare) => {
      bare.metadata.revocation_endpoint = undefined;
      const first = await run(flags(mock), { browser: scriptedBrowser });
      assertEquals(first.code, EXIT.ok, first.stderr);
      const home = first.home;
      const confidential = await run(["--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id], {
        browser: scriptedBrowser,
        home,
        env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
      });
      assertEquals(confidential.code, EXIT.ok, confidential.stderr);
      const noEndpoint = await run(flags(bare), { browser: scriptedBrowser, home });
      assertEquals(noEndpoint.code, EXIT.ok, noEndpoint.stderr);

      const result = await run(["logout", "--all"], { home });
      assertEquals(result.code, EXIT.failure, result.stderr);
      const lines = result.stderr.split("\n").filter((line) => line.startsWith("Logged out of "));
      assertEquals(
        lines.sort(),
        [
          `Logged out of ${bare.issuer} (client cli-public): removed here; the server has no revocation endpoint, so the tokens stay valid there until they expire`,
          `Logged out of ${mock.issuer} (client cli-confidential): removed here, not revoked: its client secret is not configured`,
          `Logged out of ${mock.issuer} (client cli-public): revoked at the server and removed here`,
        ].sort(),
      );
      assertStringIncludes(
        result.stderr,
        "error: Some tokens were removed here without being revoked, because their client secret is not configured\n",
      );
      assert(!result.stderr.includes("The server could not confirm"), "the server answered nothing wrong");
      assertEquals(mock.calls("revoke").length, 2, "the public entry's two tokens");

      // Now the server does refuse: that, and only that, is put on the server.
      const again = await run(flags(mock), { browser: scriptedBrowser, home });
      assertEquals(again.code, EXIT.ok);
      mock.intercept = (record) => record.path === "/revoke" ? new Response("no", { status: 500 }) : undefined;
      const refused = await run(["logout", "--all"], { home });
      assertEquals(refused.code, EXIT.failure);
      assertStringIncludes(
        refused.stderr,
        `Logged out of ${mock.issuer} (client cli-public): removed here; the server refused the revocation\n`,
      );
      assertStringIncludes(refused.stderr, "error: The server could not confirm the revocation");

      // And when the request never reaches the server, the server is not blamed at all.
      mock.intercept = undefined;
      const third = await run(flags(mock), { browser: scriptedBrowser, home });
      assertEquals(third.code, EXIT.ok);
      const unreachable = await run(["logout", "--all"], {
        home,
        fetch: (input, init) =>
          String(input instanceof Request ? input.url : input).endsWith("/revoke")
            ? Promise.reject(
              new TypeError("fetch failed", { cause: new Error("tcp connect error: Connection refused") }),
            )
            : fetch(input, init),
      });
      assertEquals(unreachable.code, EXIT.failure);
      assertStringIncludes(
        unreachable.stderr,
        `Logged out of ${mock.issuer} (client cli-public): removed here; the revocation did not reach the server\n`,
      );
      assertStringIncludes(unreachable.stderr, "error: The revocation did not reach the server;");
      assert(!unreachable.stderr.includes("The server could not confirm"), unreachable.stderr);
      await cleanUp(result);
    });
  });
});

Deno.test("a default login at a strict OpenID server that drops offline_access prints three lines", async () => {
  await withMock(async (mock) => {
    grantOnlyOnce(mock, "openid profile", { refreshToken: false });
    const result = await run(flags(mock), { browser: scriptedBrowser });
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(
      result.stderr.slice(result.stderr.indexOf("Logged in as")),
      "Logged in as alice@example.com\n" +
        "warning: The server did not grant offline_access, so it issued no refresh token\n" +
        "note: Log in with --prompt consent to get one (strict OpenID servers need it)\n",
    );
    await cleanUp(result);
  });
});

Deno.test("the device flow's prose wraps to the terminal, with its addresses whole on their own lines", async () => {
  await withMock(async (mock) => {
    const result = await run(flags(mock, "--flow", "device"), { ...fakeClock(Date.UTC(2026, 0, 1)), columns: 50 });
    assertEquals(result.code, EXIT.ok, result.stderr);
    const lines = result.stderr.trimEnd().split("\n");
    for (const line of lines) {
      assert(line.length <= 50 || /^\s*https?:\/\/\S+$/.test(line), `too wide and not a lone URL: "${line}"`);
    }
    assert(lines.some((line) => line.startsWith(`${mock.issuer}/device?user_code=`)), result.stderr);
    assertStringIncludes(result.stderr, "Or open this address, which carries the code:\n");
    await cleanUp(result);
  });
});

Deno.test("an HTTP error at discovery names the URL tried", async (t) => {
  await t.step("500", async () => {
    await withMock(async (mock) => {
      mock.intercept = (record) =>
        record.path.includes("/.well-known/") ? new Response("down", { status: 500 }) : undefined;
      const result = await run(flags(mock));
      assertEquals(result.code, EXIT.failure);
      assertStringIncludes(
        result.stderr,
        `error: Cannot fetch the server metadata: the server answered HTTP 500, a server error (GET ${mock.issuer}/.well-known/openid-configuration)\n`,
      );
      await cleanUp(result);
    });
  });
  await t.step("404 at both", async () => {
    await withMock(async (mock) => {
      const result = await run(["--issuer", `${mock.issuer}/nope`, "--client-id", "x"]);
      assertEquals(result.code, EXIT.usage);
      assertStringIncludes(
        result.stderr,
        `hint: tried ${mock.issuer}/.well-known/oauth-authorization-server/nope and ${mock.issuer}/nope/.well-known/openid-configuration; check the issuer URL`,
      );
      await cleanUp(result);
    });
  });
});

Deno.test("realDeps(): no getter changes Ctrl-C handling; catching it is an explicit call that waits and requests make", () => {
  const deps = realDeps();
  const signal = Object.getOwnPropertyDescriptor(deps, "signal");
  assertEquals(signal?.get, undefined, "the signal is a plain property");
  assert(signal?.value instanceof AbortSignal);
  assertEquals(typeof deps.catchInterrupt, "function");
  assertEquals(typeof deps.timer, "function", "the real timer is injected like any other edge");
});
